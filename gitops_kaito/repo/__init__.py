"""Reading a model repository: YAML with lines, requests, gitops-kaito.yaml, the catalog, resolution, the loader.
Pure: may import model/ only; no cluster, git or Azure."""

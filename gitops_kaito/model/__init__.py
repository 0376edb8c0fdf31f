"""The vocabulary every layer shares: object refs and manifests with their normal form, ownership labels,
states, KAITO and Karpenter constants. Imports nothing else of gitops_kaito."""

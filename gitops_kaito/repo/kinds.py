"""The request kinds a model repository may hold (ModelDeployment, and more), and what every kind must offer.

Pure vocabulary: the loader dispatches on a document's `kind:` through a RequestKind; planning, status and the plan
report read any resolved request through the Request/Resolved protocols and narrow to a kind's class where needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from gitops_kaito.model.ownership import model_id

if TYPE_CHECKING:
    from gitops_kaito.repo.catalog import Catalog, GpuSku
    from gitops_kaito.repo.config import RepoConfig

API_VERSION = "gitops.kaito.sh/v1alpha1"  # every request kind shares it


class Request(Protocol):
    """One request as read from models/<namespace>/<name>.yaml, whatever its kind; ids are unique across kinds."""

    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...  # repo-relative, e.g. models/ml/phi.yaml
    @property
    def suspend(self) -> bool: ...
    @property
    def annotations(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def id(self) -> str: ...


class Identified:
    """`kind` and `id` of a request dataclass with `namespace` and `name` fields: each kind's class sets `kind`."""

    kind: ClassVar[str]
    namespace: str
    name: str

    @property
    def id(self) -> str:
        return model_id(self.namespace, self.name)


class Resolved(Protocol):
    """A request with everything decided that rendering, the plan's cost and status need."""

    @property
    def request(self) -> Request: ...
    @property
    def sku(self) -> GpuSku | None: ...
    @property
    def nodes(self) -> int: ...  # per replica (a workload KAITO provisions once)
    @property
    def gpus(self) -> int: ...  # all replicas
    @property
    def price_per_hour(self) -> float | None: ...  # all replicas
    @property
    def provisioning(self) -> str: ...
    @property
    def note(self) -> str: ...  # what validate/render/plan must tell about it, or ""
    @property
    def uncataloged(self) -> bool: ...
    @property
    def summary(self) -> str: ...  # what the plan's Preset column shows


# A schema-valid document's data, its namespace (the folder), its repo-relative path and the repo config -> request.
Parse = Callable[[dict[str, Any], str, str, "RepoConfig"], Request]
# A request of this kind -> resolved; raises repo.resolve.ResolveError(json_path, message) for bad input.
Resolve = Callable[[Any, "Catalog", "RepoConfig"], Resolved]


@dataclass(frozen=True)
class RequestKind:
    """How the loader reads one kind: its JSON Schema (under schemas/), its parser and its resolver."""

    kind: str
    schema_file: str
    parse: Parse
    resolve: Resolve

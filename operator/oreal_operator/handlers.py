"""Kopf's side of the operator: settings, credentials, and the watches that feed the controller.

- startup: Kopf settings (each with why), then the controller (`oreal_operator.controller`):
  its caches primed, its workers and status tick started;
- login: the pod's service account, else $KUBECONFIG (`oreal_operator.kube`, no `kubernetes` client
  library) for Kopf, and the same credentials for the controller's own API client;
- event handlers, one per watched kind, each one line: OREALRuns, and the JobSets and ConfigMaps
  labelled `app.kubernetes.io/managed-by: oreal-operator` (what the operator creates). A child
  created, edited or deleted brings its run's reconcile within a moment, not at the next tick;
- cleanup: the controller stops (workers cancelled, HTTP sessions closed).

Only event handlers: Kopf keeps no state on the runs (no annotations, no finalizer), so deleting a
run never waits for the operator; its children go with their owner reference. Everything the
operator writes, it writes from the controller's one reconcile per run.

`build_registry(status_seconds)` registers them in a registry of their own (the status interval is
an argument, not an import-time setting).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from oreal.spec.models import API_GROUP, API_VERSION, PLURAL
from oreal_operator import kube
from oreal_operator.api import Api
from oreal_operator.config import OperatorConfig
from oreal_operator.controller import Controller
from oreal_operator.naming import MANAGED_BY, MANAGED_BY_LABEL
from oreal_operator.progress import HttpReports

RESOURCE = (API_GROUP, API_VERSION, PLURAL)


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf deep-copies every event's object to diff it against the last handled state; only
    change-detecting handlers (on.create/update) use that diff, and the operator has none."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


JOBSETS = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
CONFIGMAPS = ("", "v1", "configmaps")
OURS = {MANAGED_BY_LABEL: MANAGED_BY}


async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, status_seconds: float, logger: logging.Logger, **_: Any
) -> None:
    # Event handlers only (the controller reconciles): no diff base to build, store or patch.
    settings.persistence.diffbase_storage = NoDiffBase()
    # Events are posted by the controller itself (api.post_event), as oreal-operator.
    settings.posting.enabled = False
    # Kopf logs every event handler's success at INFO: a line per watch event of every run and
    # child. Warnings and errors still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Watches end server-side after ~5 min and are reopened; a client timeout slightly longer
    # catches a connection that died silently (a load balancer dropping idle streams).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # One API call of Kopf's own must not hang forever.
    settings.networking.request_timeout = 60
    # Peering off: one reconciling replica (leader election is oreal_operator.leader's).
    settings.peering.standalone = True
    # Kopf keeps one worker per object, which holds the object's last event until it has had no
    # new one for idle_timeout (5 s by default): a burst of new runs kept every run's events,
    # its JobSet's ~14 kB among them (~100 kB of objects a run at 1,000 runs created at once).
    # A worker that ends is started again by the object's next event.
    settings.queueing.idle_timeout = 0.5
    # Scanning stays on: Kopf notices the CRDs installed after the operator, and namespaces that
    # appear (RBAC: list/watch CRDs and namespaces). Tests against kmock turn it off.
    config = OperatorConfig.from_env()
    api = Api.from_connection(kube.connection_info(), login=kube.connection_info)
    memo.controller = Controller(api, config, status_seconds, HttpReports())
    await memo.controller.start()
    logger.info("reconciling with %d workers, status every %.1f s", memo.controller.workers, status_seconds)


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop()


def login(**_: Any) -> kopf.ConnectionInfo:
    return kube.connection_info()


async def run_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe("OREALRun", event.get("type"), event["object"])


async def jobset_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe("JobSet", event.get("type"), event["object"])


async def configmap_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe("ConfigMap", event.get("type"), event["object"])


def build_registry(status_seconds: float) -> kopf.OperatorRegistry:
    """The operator's handlers, the status tick every `status_seconds`, in a registry of their own."""
    registry = kopf.OperatorRegistry()

    async def start(**kwargs: Any) -> None:
        await startup(status_seconds=status_seconds, **kwargs)

    start.status_seconds = status_seconds  # type: ignore[attr-defined]  # the tick's interval, for a look
    kopf.on.startup(registry=registry, id="startup")(start)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.login(registry=registry)(login)
    kopf.on.event(*RESOURCE, registry=registry)(run_event)
    kopf.on.event(*JOBSETS, labels=OURS, registry=registry)(jobset_event)
    kopf.on.event(*CONFIGMAPS, labels=OURS, registry=registry)(configmap_event)
    return registry

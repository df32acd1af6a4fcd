"""Kopf handlers of the OREALRun resource: thin wrappers around `oreal_operator.reconcile`.

- startup: Kopf settings (each with why) and the operator's configuration;
- create / resume / update of spec: apply the children. A spec that cannot run (the models, the
  renderer, a started run's bucket or the API server refuse it: `reconcile.INVALID_SPEC`) gets the
  SpecInvalid status, its StatefulSets go to 0 replicas and the handler raises kopf.PermanentError
  (no retry until the spec changes again); a child name taken by another owner:
  kopf.TemporaryError; anything else (API server unreachable, 409, 5xx): Kopf retries;
- a timer every OREAL_OPERATOR_STATUS_SECONDS: observe pods and bucket, write `.status` through
  `patch.status`, stop a finished run's pods, keep a refused spec SpecInvalid (and its pods at 0)
  while it lasts, post an event when the phase changes;
- delete: forget the run in the oreal_runs gauge and the operator's memory of it.

Finalizer: Kopf puts one on every OREALRun it handles, `oreal.io/finalizer`, because the timer
needs it (Kopf stops a resource's timers before it lets the resource go). The children need none:
they go with their owner reference. So deleting a run needs the operator running: while it is
down (or uninstalled) `kubectl delete orealrun` waits forever. Delete runs before
`helm uninstall`, or remove the finalizer by hand:
`kubectl patch orealrun NAME --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]'`.

Handlers are sync: Kopf runs them in its thread pool, where the `kubernetes` client may block.
`build_registry(status_seconds)` registers them in a registry of their own (Kopf fixes a timer's
interval when it is registered, so the interval is an argument, not an import-time setting).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from oreal.spec.models import API_GROUP, API_VERSION, PLURAL
from oreal_operator import kube, reconcile
from oreal_operator.config import OperatorConfig
from oreal_operator.metrics import RECONCILE_DURATION, RECONCILE_ERRORS

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
FOREIGN_RETRY_SECONDS = 60


def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's progress and "last handled" records go into annotations under our own domain: the
    # CRD's status schema has no room for Kopf's status.kopf (the API server would prune it), and
    # users see at a glance which annotations belong to the oreal operator.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="oreal.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="oreal.io", key="last-handled-configuration"
    )
    # The finalizer Kopf adds to every OREALRun because of the status timer (not for the children:
    # they go by owner reference), named after us. Deleting a run needs the operator running (or
    # the finalizer removed by hand): see the module docstring.
    settings.persistence.finalizer = "oreal.io/finalizer"
    # Events: only what the handlers post explicitly (phase changes, a bad spec), as oreal-operator.
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "oreal-operator"
    # Watches end server-side after ~5 min and are reopened; a client timeout slightly longer
    # catches a connection that died silently (a load balancer dropping idle streams).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # One API call must not hold a handler forever (Kopf's own calls: patches, events).
    settings.networking.request_timeout = 60
    # One replica (the chart's Deployment), no peering objects to create or RBAC for them.
    settings.peering.standalone = True
    # Scanning stays on: Kopf notices the CRD installed after the operator, and namespaces that
    # appear (RBAC: list/watch CRDs and namespaces). Tests against kmock turn it off.
    memo.config = OperatorConfig.from_env()


def login(**_: Any) -> kopf.ConnectionInfo:
    # Kopf and the handlers' `kubernetes` client use one configuration: the pod's service
    # account, else $KUBECONFIG as it is now (Kopf's own login reads the one seen at import).
    kube.configure()
    return kube.connection_info()


def apply(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    with RECONCILE_DURATION.labels(handler="apply").time():
        try:
            actions = reconcile.apply_run(body, memo.config, now=_now())
        except reconcile.INVALID_SPEC as err:
            RECONCILE_ERRORS.labels(handler="apply", kind="permanent").inc()
            patch.status.update(reconcile.status_patch(reconcile.refuse(body, str(err), _now())))
            kopf.warn(body, reason="SpecInvalid", message=str(err))
            raise kopf.PermanentError(str(err)) from None
        except kube.ForeignObjectError as err:
            RECONCILE_ERRORS.labels(handler="apply", kind="temporary").inc()
            kopf.warn(body, reason="NameTaken", message=str(err))
            raise kopf.TemporaryError(str(err), delay=FOREIGN_RETRY_SECONDS) from None
        except Exception:
            RECONCILE_ERRORS.labels(handler="apply", kind="temporary").inc()
            raise  # e.g. the API server unreachable: Kopf retries with its backoff
    changed = {child: action for child, action in actions.items() if action != "unchanged"}
    if changed:
        logger.info("children: %s", ", ".join(f"{c} {a}" for c, a in changed.items()))


def observe(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    with RECONCILE_DURATION.labels(handler="status").time():
        try:
            old, new, event = reconcile.tick(body, memo.config, _now())
        except Exception:
            RECONCILE_ERRORS.labels(handler="status", kind="temporary").inc()
            raise  # Kopf runs the timer again after its backoff
    if new != old:
        patch.status.update(reconcile.status_patch(new))
    if event is not None:
        post = kopf.warn if new.phase == "Failed" else kopf.info
        post(body, reason=event[0], message=event[1])
        logger.info("%s", event[1])


def forget(meta: kopf.Meta, **_: Any) -> None:
    reconcile.forget(meta)


def _now() -> datetime:
    return datetime.now(UTC)


def build_registry(status_seconds: float) -> kopf.OperatorRegistry:
    """The operator's handlers, the status timer every `status_seconds`, in a registry of their own."""
    registry = kopf.OperatorRegistry()
    kopf.on.startup(registry=registry)(startup)
    kopf.on.login(registry=registry)(login)
    kopf.on.resume(*RESOURCE, registry=registry)(apply)
    kopf.on.create(*RESOURCE, registry=registry)(apply)
    kopf.on.update(*RESOURCE, field="spec", registry=registry)(apply)
    # A failed round (API or bucket hiccup) is simply tried again at the next interval.
    kopf.timer(*RESOURCE, interval=status_seconds, backoff=status_seconds, registry=registry)(observe)
    kopf.on.delete(*RESOURCE, optional=True, registry=registry)(forget)
    return registry

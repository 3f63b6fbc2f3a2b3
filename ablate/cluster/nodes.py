"""Ray core for the cluster's nodes (Ray's third module, beside `jobs` and the Tune seam
`ablate.search.tuning`): what the live nodes have, whether one trial fits on one of them, the
pre-flight check run on every node (shared storage, MLflow), and why trials wait when they do
not fit.
"""

from __future__ import annotations

import uuid
from typing import Any

import ray

from ablate import results
from ablate.errors import Problem, SpecError
from ablate.spec import StudySpec


def nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def machines() -> set[str]:
    """The distinct machines (node IP addresses) of the cluster's live nodes."""
    return {n.get("NodeManagerAddress", "") for n in nodes()}


def node_count() -> int:
    return len(nodes())


def wanted(spec: StudySpec) -> dict[str, float]:
    return {k: v for k, v in {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}.items() if v}


def check_resources(spec: StudySpec) -> None:
    """Fail before launching when no node could ever place one trial (it would pend forever):
    the cluster lacks the resource, or has it only spread over nodes (a trial runs on one)."""
    total = ray.cluster_resources()
    need = wanted(spec)
    missing = [
        f"resources.{name.lower()}: a trial asks for {_asked(spec, name, amount)} but the "
        f"cluster has {total.get(name, 0):g} {name} (lower it, or use a cluster that has {name})"
        for name, amount in need.items()
        if amount > total.get(name, 0)
    ]
    live = nodes()
    if not missing and live and not any(_fits(need, n["Resources"]) for n in live):
        largest = ", ".join(_describe_node(n, n["Resources"]) for n in live[:6])
        missing.append(
            f"resources: a trial needs {_amounts(need)} on one node, and no node has "
            f"that much (the cluster has it only in total; nodes: {largest}); lower it, or add "
            "a larger node"
        )
    if missing:
        problems = [Problem(str(spec.path), "", reason) for reason in missing]
        raise SpecError(problems)


def _asked(spec: StudySpec, name: str, amount: float) -> str:
    if name == "GPU" and spec.resources.gpu_auto:
        return "a measured share of a GPU (gpu: auto)"
    return f"{amount:g} {name}"


def preflight(storage: results.Location | None, tracking_uri: str) -> list[str]:
    """From every live node: can it read a file the driver wrote to `storage` (it is shared),
    write its own there, and reach the MLflow tracking server? Problems, one per node and cause.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name, token = f".ablate-preflight-{uuid.uuid4().hex}", uuid.uuid4().hex
    if storage is not None:
        problem = results.probe(storage)
        if problem:
            return [f"storage {storage} (from the driver): {problem}"]
        results.write_text(storage, name, token)
    check = ray.remote(num_cpus=0, max_retries=0)(_node_check)
    refs = {
        node["NodeID"]: check.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(storage, name, token, tracking_uri)
        for node in nodes()
    }
    problems = []
    try:
        for node_id, ref in refs.items():
            try:
                problems += [f"node {node_id[:12]}: {p}" for p in ray.get(ref, timeout=120)]
            except Exception as err:
                problems.append(f"node {node_id[:12]}: the check did not run ({err})")
    finally:
        if storage is not None:
            results.remove(storage, name)
    return problems


def _node_check(
    storage: results.Location | None, name: str, token: str, tracking_uri: str
) -> list[str]:
    from ablate import tracking

    problems = []
    if storage is not None:
        problem = results.check_readable(storage, name, token) or results.probe(storage)
        if problem:
            problems.append(f"storage {storage}: {problem}")
    if not tracking.is_local_store(tracking_uri):
        problem = tracking.check_reachable(tracking_uri)
        if problem:
            problems.append(f"MLflow {tracking_uri} does not answer: {problem}")
    return problems


def free_per_node() -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """(node, total, free) for every live node."""
    from ray._private import state  # the per-node view Ray's own `ray status` uses

    free = state.available_resources_per_node()
    return [(_node_label(n), n["Resources"], free.get(n["NodeID"], {})) for n in nodes()]


def pending_message(
    wanted: dict[str, float],
    count: int,
    waited: float,
    nodes: list[tuple[str, dict[str, float], dict[str, float]]],
) -> str:
    """Why `count` trials wait: what one needs on one node, what each node has free, and the
    resource that is short (missing everywhere, too small on every node, or busy)."""
    need = _amounts(wanted)
    lines = [
        f"ablate: {count} trial{'s' if count != 1 else ''} pending for {waited:.0f} s: each needs "
        f"{need} on one node, and no node has that free now."
    ]
    for label, total, free in nodes:
        have = ", ".join(f"{k} {free.get(k, 0):g} free of {total.get(k, 0):g}" for k in wanted)
        lines.append(f"    {label}: {have or 'nothing it needs'}")
    for name, amount in wanted.items():
        if not any(total.get(name, 0) for _, total, _ in nodes):
            lines.append(
                f"    missing: no node has {name} at all; add {name} nodes (an autoscaling "
                f"cluster starts them on demand) or lower resources.{name.lower()}"
            )
        elif not any(total.get(name, 0) >= amount for _, total, _ in nodes):
            lines.append(
                f"    missing: no node has {amount:g} {name}; lower resources.{name.lower()}"
            )
        elif not any(free.get(name, 0) >= amount for _, _, free in nodes):
            lines.append(
                f"    busy: every node's {name} is in use by other work (other jobs or "
                "studies); the trials start when it frees"
            )
    if nodes and len(lines) == 1 + len(nodes):
        lines.append(
            "    no single node has all of it free at once; the trials start when one does"
        )
    return "\n".join(lines)


def _fits(wanted: dict[str, float], have: dict[str, float]) -> bool:
    return all(have.get(k, 0) >= v for k, v in wanted.items())


def _amounts(resources: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in resources.items()) or "nothing"


def _node_label(node: dict[str, Any]) -> str:
    return f"node {node['NodeID'][:12]} ({node.get('NodeManagerAddress', '?')})"


def _describe_node(node: dict[str, Any], resources: dict[str, float]) -> str:
    have = " ".join(f"{k}={resources.get(k, 0):g}" for k in ("CPU", "GPU"))
    return f"{node.get('NodeManagerAddress', '?')} {have}"

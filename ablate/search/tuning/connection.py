"""The driver's hold on Ray: join a cluster or start a local Ray, let go of it, step back into
a working directory a node deleted, and how much Ray and Tune print (-q / -v)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ablate import results
from ablate.cluster.access import ensure_local_token
from ablate.errors import ConfigError
from ablate.search.tuning.ray_api import ray, tune

log = logging.getLogger("ablate")
_DRIVER: dict[str, str] = {}  # "cwd": the driver's working directory, while it holds Ray


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray bound to 127.0.0.1. A Ray this call
    connects to, `disconnect` lets go of (a Ray the caller already holds is left alone)."""
    if address and address.startswith(("http://", "https://")):
        raise ConfigError(
            f"--address {address} is a Ray dashboard (Jobs API) address: submit the study "
            f"there with `ablate submit FILE --address {address}`, or give `ablate search` the "
            "cluster's GCS address (HEAD:6379) to run the driver here"
        )
    if ray.is_initialized():
        return
    quiet = not log.isEnabledFor(logging.INFO)  # -q: no worker output, only Ray's errors
    options = {"log_to_driver": not quiet, "logging_level": _ray_log_level()}
    # Ray 2.60 turns token authentication on by default (token in ~/.ray/auth_token, generated
    # on first start); ablate leaves it on and never sets RAY_AUTH_MODE itself.
    if address:
        _DRIVER["cwd"] = os.getcwd()
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {err}") from err
        except Exception as err:
            if type(err).__name__ != "AuthenticationError":
                raise
            raise ConfigError(
                f"the Ray cluster at {address} refused this driver's token: {err}\n"
                "Ray reads the token from $RAY_AUTH_TOKEN, else the file named by "
                "$RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token; `ray get-auth-token` on the "
                "head node prints the cluster's."
            ) from err
        reenter_working_dir()
    else:
        _DRIVER["cwd"] = os.getcwd()
        ensure_local_token()
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **options)


def reenter_working_dir() -> None:
    """Step back into the driver's working directory if it was deleted under it. A job's
    working_dir is unpacked once per node, and a second node sharing this disk (nodes started on
    one machine share /tmp/ray) deletes and unpacks it again when its first task arrives: the
    driver's cwd then dangles, though the same path holds the same files again."""
    cwd = _DRIVER.get("cwd")
    try:
        os.getcwd()
        return
    except FileNotFoundError:
        if not cwd:
            return
    deadline = time.monotonic() + 120  # caught between the delete and the unpack: wait for it
    while True:
        try:
            os.chdir(cwd)
            return
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def disconnect() -> None:
    """Let go of the Ray that `connect` connected to: Ray's log threads stop and the log lines
    its deduplicator held back are printed now, before the study's summary, not after it."""
    if _DRIVER.pop("cwd", None) is not None and ray.is_initialized():
        ray.shutdown()
    reenter_working_dir()


def _ray_log_level() -> int:
    """Ray's own driver-side log lines: warnings by default, everything with -v."""
    if log.isEnabledFor(logging.DEBUG):
        return logging.INFO
    return logging.WARNING if log.isEnabledFor(logging.INFO) else logging.ERROR


def tune_verbosity() -> int:
    """Tune's console output: 0 with -q, its trial tables by default, every result with -v."""
    if log.isEnabledFor(logging.DEBUG):
        return 2
    return 1 if log.isEnabledFor(logging.INFO) else 0


def can_restore(ray_dir: Path | str) -> bool:
    """Whether a Ray experiment folder (a path or a URI) holds a study Tuner.restore continues."""
    if not results.is_uri(ray_dir) and not Path(ray_dir).exists():
        return False
    try:
        return tune.Tuner.can_restore(str(ray_dir))
    except Exception:  # an unreachable or foreign storage location: start afresh
        return False

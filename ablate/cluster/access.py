"""Reaching a Ray cluster's dashboard (Jobs API): its address and the auth token, as Ray finds
them, and a first check that a dashboard answers there. No Ray import: `ablate.cluster.jobs`
builds the Jobs API client on top of this.

Token authentication: Ray 2.60 sends its token only when `RAY_AUTH_MODE=token` is set in the
client's environment, so `ray job submit` against a token cluster fails with 401 unless it is.
ablate reads the token from the same places as Ray ($RAY_AUTH_TOKEN, else the file named by
$RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token) and always sends it as a bearer header (a cluster
without authentication ignores it); RAY_AUTH_MODE is never set in-process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ablate.errors import AblateError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TOKEN_HELP = (
    "ablate reads the token as Ray does: $RAY_AUTH_TOKEN, else the file named by "
    "$RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token. `ray get-auth-token` on the head node prints "
    "the cluster's token (KubeRay: the Secret named in the RayCluster); save it to "
    "~/.ray/auth_token or export RAY_AUTH_TOKEN."
)


class ClusterError(AblateError):
    """The cluster cannot be reached, or a job cannot be found or submitted."""


class ClusterUnreachable(ClusterError):
    """Nothing answers at the dashboard address."""


class ClusterAuthError(ClusterError):
    """The cluster wants a token we do not have, or refused the one we sent."""

    exit_code = 2


def default_token_path() -> Path:
    """Where Ray keeps its token when the environment names none (read at each call: $HOME)."""
    return Path.home() / ".ray" / "auth_token"


def read_token() -> tuple[str | None, str]:
    """(token, where it came from), looked up in Ray's order; (None, "") when there is none."""
    value = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return value, "$RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:  # Ray treats an unreadable file named here as fatal, not as "no token"
        path = Path(named).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as err:
            raise ClusterAuthError(f"RAY_AUTH_TOKEN_PATH={named} cannot be read: {err}") from err
        if not value:
            raise ClusterAuthError(f"RAY_AUTH_TOKEN_PATH={named} is empty. {TOKEN_HELP}")
        return value, f"$RAY_AUTH_TOKEN_PATH ({path})"
    default = default_token_path()
    with contextlib.suppress(OSError):
        value = default.read_text().strip()
        if value:
            return value, str(default)
    return None, ""


def ensure_local_token() -> None:
    """The token a Ray started on this machine will use, made once if there is none.

    Ray 2.60 makes ~/.ray/auth_token on its first start with a plain write, so two drivers that
    start Ray at once on a fresh machine (a double launch, tests run in parallel) can each write
    a token of their own, and one cluster's workers then read the other's and are refused.
    Made here as Ray makes it (32 random bytes in hex), but complete before it is visible, and
    only by the first: the file is linked into place, which fails if it exists. Left to Ray: a
    token in $RAY_AUTH_TOKEN or $RAY_AUTH_TOKEN_PATH, and authentication turned off."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    if os.environ.get("RAY_AUTH_TOKEN", "").strip() or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = default_token_path()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".auth_token.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another driver made it first: theirs
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def resolve_address(address: str | None) -> str:
    """--address, else $RAY_API_SERVER_ADDRESS, else an http(s) $RAY_ADDRESS, else the local
    default, as `ray job` does; a bare HOST:PORT gets http://."""
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    if not address:
        address = env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


def is_loopback(address: str) -> bool:
    """Whether the cluster at `address` is on this machine (its dashboard on a loopback host)."""
    host = urllib.parse.urlsplit(address if "://" in address else f"//{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(address: str, headers: dict[str, str]) -> None:
    """Fail fast and clearly when nothing answers at `address` or it is no Ray dashboard."""
    request = urllib.request.Request(f"{address}/api/version", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            return  # the Jobs API calls below say what is wrong with the token
        raise ClusterError(
            f"{address} answered HTTP {err.code} to /api/version: is it the Ray dashboard "
            "(Jobs API, port 8265 by default)?"
        ) from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ClusterUnreachable(
            f"cannot reach the Ray dashboard (Jobs API) at {address}: {reason}.\n"
            "Is the cluster up, and is this its dashboard address? (`ray start --head "
            "--dashboard-host 0.0.0.0`; `ray dashboard cluster/gpu-cluster.yaml` forwards it to "
            "http://127.0.0.1:8265; on Kubernetes, port-forward the head service's 8265)"
        ) from err
    if "ray_version" not in answer:
        raise ClusterError(f"{address}/api/version does not look like a Ray dashboard: {answer}")

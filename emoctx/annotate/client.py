"""The few Label Studio REST API calls the workflow needs, with errors a user can act on.

Authentication is the account's API token (``Authorization: Token <token>``). Every failed call raises
:class:`~emoctx.errors.EmoctxError` naming the call, the HTTP status and Label Studio's own message.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from emoctx.errors import EmoctxError

log = logging.getLogger(__name__)

IMPORT_BATCH = 500
"""Tasks sent per import call."""


class LabelStudioClient:
    """A Label Studio server's REST API as one account.

    Args:
        url: the server's address (``http://127.0.0.1:8080``).
        token: the account's API token.
        timeout: seconds to wait for each answer.
    """

    def __init__(self, url: str, token: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``path`` (e.g. ``/api/projects``) and return the decoded JSON answer (None when empty)."""
        try:
            r = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise EmoctxError(f"Label Studio at {self.url} cannot be reached ({e}); is it running?") from e
        if r.status_code >= 400:
            detail = r.text[:1000]
            try:
                body = r.json()
                detail = body.get("validation_errors") or body.get("detail") or detail
            except ValueError:
                pass
            hint = " (check the API token)" if r.status_code == 401 else ""
            raise EmoctxError(f"Label Studio {method} {path}: HTTP {r.status_code}{hint}: {detail}")
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError as e:
            raise EmoctxError(
                f"Label Studio {method} {path}: the answer is not JSON ({r.text[:200]!r})"
            ) from e

    # -- who -----------------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The account of the token."""
        return self.request("GET", "/api/current-user/whoami")

    def users(self) -> dict[int, str]:
        """User id -> email of every account of the organisation."""
        answer = self.request("GET", "/api/users")
        users = answer.get("results", answer) if isinstance(answer, dict) else answer
        return {int(u["id"]): str(u.get("email") or u.get("username") or u["id"]) for u in users}

    # -- projects ------------------------------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        """Every project the account sees."""
        answer = self.request("GET", "/api/projects", params={"page_size": 1000})
        return answer.get("results", answer) if isinstance(answer, dict) else answer

    def create_project(
        self, title: str, label_config: str, overlap: int = 1, description: str = ""
    ) -> dict[str, Any]:
        """A new project: the labelling config and ``overlap`` annotators per task (every task).

        Predictions are shown to annotators as the starting point of their annotation.
        """
        if overlap < 1:
            raise EmoctxError(f"overlap must be at least 1 annotator per task, got {overlap}")
        return self.request(
            "POST",
            "/api/projects",
            json={
                "title": title,
                "description": description,
                "label_config": label_config,
                "maximum_annotations": int(overlap),
                "overlap_cohort_percentage": 100,
                "show_collab_predictions": True,
            },
        )

    def add_local_storage(self, project: int, path: str, title: str = "photos") -> dict[str, Any]:
        """Let the project's pages load the files below ``path`` (a local-files storage; no sync)."""
        return self.request(
            "POST",
            "/api/storages/localfiles",
            json={"project": int(project), "path": str(path), "title": title, "use_blob_urls": False},
        )

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> int:
        """Import tasks (with their predictions); returns the number of tasks the server made."""
        made = 0
        for start in range(0, len(tasks), IMPORT_BATCH):
            answer = self.request(
                "POST", f"/api/projects/{int(project)}/import", json=tasks[start : start + IMPORT_BATCH]
            )
            made += int(answer.get("task_count", 0))
        return made

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """The project's tasks (id, data, counts)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.request(
                "GET", "/api/tasks", params={"project": int(project), "page": page, "page_size": 500}
            )
            batch = answer.get("tasks", []) if isinstance(answer, dict) else answer
            out.extend(batch)
            total = answer.get("total", len(out)) if isinstance(answer, dict) else len(out)
            if not batch or len(out) >= total:
                return out
            page += 1

    def submit_annotation(
        self, task: int, result: list[dict[str, Any]], lead_time: float | None = None
    ) -> dict:
        """Submit an annotation of ``task`` as this account (what the labelling page's Submit does)."""
        body: dict[str, Any] = {"result": result}
        if lead_time is not None:
            body["lead_time"] = float(lead_time)
        return self.request("POST", f"/api/tasks/{int(task)}/annotations/", json=body)

    def export(self, project: int) -> list[dict[str, Any]]:
        """The full JSON export of every task (with annotations, predictions and who made them)."""
        answer = self.request(
            "GET",
            f"/api/projects/{int(project)}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
        )
        if not isinstance(answer, list):
            raise EmoctxError(f"Label Studio export of project {project}: expected a list of tasks")
        return answer

"""Serving the app: the queue, the files Gradio may serve, Gradio's cache bounded by size and age (`CacheBound`,
`CacheGuard`), and the login gate in front of every route (`AccessGate`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import queueing

from sd35ui.app.context import AppConfig

MAX_UPLOAD_BYTES = 64 * 2**20  # the PNG drop zone (history.MAX_PNG_BYTES); Gradio accepts any size otherwise


DEFAULT_CACHE_LIMIT_MB = 2048  # this app's files in Gradio's cache (uploads, copies of results): oldest go first
DEFAULT_CACHE_MAX_AGE_S = 24 * 3600  # ... and each goes after a day
CACHE_PRUNE_EVERY_S = 60  # results are copied into the cache as they are made: checked this often (and per upload)


def launch(
    app: gr.Blocks,
    config: AppConfig,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    mcp: bool = False,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_MB * 2**20,
    cache_max_age_s: float = DEFAULT_CACHE_MAX_AGE_S,
    login_limiter: Any = None,
    **kwargs: Any,
) -> Any:
    """Queue and serve the app. Only the outputs folder is served as files besides Gradio's own cache, where this
    app's files are bounded in total size and age (`CacheBound`). With `auth`, every route but the login page needs
    the login (`AccessGate`), and failed logins are limited per address (`login_limiter`, by default
    `access.LoginLimiter()`: 5 failures a minute)."""
    from starlette.middleware import Middleware

    from sd35ui.app.access import LoginLimiter

    config.outputs.mkdir(parents=True, exist_ok=True)
    app.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    app._queue = JobsBoundQueue(app, config.queue_size, config.concurrency)  # a Stop is answered when it is full
    cache = CacheBound(app, cache_limit_bytes, cache_max_age_s)
    app.sd35ui_cache = cache  # for tests and tools: what the app keeps in Gradio's cache
    # Middleware must be given to the FastAPI app as Gradio creates it: Starlette refuses any added after start.
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    middleware = list(app_kwargs.get("middleware") or [])
    if auth is not None:  # outermost: nothing below runs for a request without the login
        app.sd35ui_login_limiter = limiter = login_limiter or LoginLimiter()
        middleware.insert(0, Middleware(AccessGate, limiter=limiter))
    middleware.append(Middleware(CacheGuard, cache=cache))
    app_kwargs["middleware"] = middleware
    app_kwargs["lifespan"] = cache.lifespan(app_kwargs.get("lifespan"))
    block = not kwargs.pop("prevent_thread_lock", False)
    served = app.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        allowed_paths=[str(config.outputs)],
        show_error=True,  # Gradio's own refusals (a path never uploaded, a malformed call) keep their message
        max_file_size=MAX_UPLOAD_BYTES,
        mcp_server=mcp,
        app_kwargs=app_kwargs,
        prevent_thread_lock=True,  # waited for below, not by Gradio
        **kwargs,
    )
    if block:
        serve_until_interrupted(app, cache)
    return served


def serve_until_interrupted(app: gr.Blocks, cache: CacheBound) -> None:
    """Serve until Ctrl-C (or SIGTERM, which demo.py turns into one), then stop the way `app.close()` does, and
    empty the app's part of the cache. Gradio's own wait (`Blocks.block_thread`) only closes the HTTP server on
    Ctrl-C: the event streams of open pages and connected clients keep it waiting, Gradio gives up after 5 s, and the
    process ends before the server's shutdown (`CacheBound.lifespan`) has deleted anything. `app.close()` ends those
    streams first; the last prune is for a stream that still holds the server (a running job's)."""
    import time

    try:
        while app.is_running:
            time.sleep(0.1)
    except KeyboardInterrupt:
        logging.getLogger("sd35ui").info("Stopping the server")
    app.close()
    cache.prune(everything=True)


class JobsBoundQueue(queueing.Queue):
    """Gradio's queue, with its bound (`max_size`) on the jobs only. Gradio 6.31 checks `max_size` first thing in
    `Queue.push`, for every event that comes through the queue, and gradio_client and /gradio_api/call/ send every
    event through it, also those wired with `queue=False` (Stop, which the page calls outside the queue): with the
    queue full, /stop got "Queue is full" and the job ran on to its end. Here such events are always admitted (they
    take no GPU and finish at once; the page runs them with no bound at all), and jobs are refused as before.

    Private Gradio API, kept to this class: the queue's constructor as `Blocks.queue()` calls it, and `push`'s
    signature, result and `max_size` check, which this takes over (Gradio's own is off: `max_size=None`).
    tests/app/test_stop.py checks it on every upgrade."""

    def __init__(self, blocks: gr.Blocks, max_size: int, default_concurrency_limit: int) -> None:
        # As Gradio 6.31's Blocks.queue(max_size=..., default_concurrency_limit=...) makes its queue
        super().__init__(
            live_updates=True,
            concurrency_count=blocks.max_threads,
            update_intervals=1,
            max_size=None,
            blocks=blocks,
            default_concurrency_limit=default_concurrency_limit,
        )
        self.job_limit = max_size

    async def push(self, body: Any, request: Any, username: str | None) -> tuple[bool, Any, str]:
        fn = self.blocks.fns.get(body.fn_index) if body.fn_index is not None else None
        if (fn is None or fn.queue) and len(self) >= self.job_limit:  # Gradio's check and words
            return False, f"Queue is full. Max size is {self.job_limit} and size is {len(self)}.", "queue_full"
        return await super().push(body, request, username)


class CacheBound:
    """Bounds what this app keeps in Gradio's cache (`gradio.utils.get_upload_folder()`: GRADIO_TEMP_DIR, else
    /tmp/gradio, shared with any other Gradio app on the machine): the uploads and the copies of results that Gradio
    tracks for this Blocks (`temp_file_sets`). `prune` deletes the expired ones and then the oldest until the total
    fits the limit; all of them go when the server stops. Gradio's own `delete_cache=(frequency, age)` only expires
    files by age, with no bound on their total size, and iterates the same sets unlocked from another thread, so this
    does both jobs in one place instead. Ages count from a file's ctime, which Gradio renews when it hands a cached
    file out again."""

    def __init__(self, blocks: gr.Blocks, limit_bytes: int, max_age_s: float) -> None:
        if limit_bytes < 1 or max_age_s <= 0:
            raise ValueError("the cache limit and the maximum age must be positive")
        self.blocks = blocks
        self.limit_bytes = int(limit_bytes)
        self.max_age_s = float(max_age_s)
        self.folder = Path(blocks.GRADIO_CACHE).resolve()
        self.every_s = max(1.0, min(CACHE_PRUNE_EVERY_S, self.max_age_s / 2))
        self._lock = threading.Lock()

    def files(self) -> list[tuple[float, int, str]]:
        """(ctime, bytes, path) of each file this app has in the cache, oldest first; files that Gradio keeps for
        good (examples, default values) are left out."""
        import os

        keep: set[str] = set()
        for block in list(self.blocks.blocks.values()):
            keep.update(getattr(block, "keep_in_cache", ()))
        found: dict[str, tuple[float, int, str]] = {}
        for paths in list(self.blocks.temp_file_sets):
            for path in list(paths):
                if path in keep or path in found:
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    paths.discard(path)  # deleted by someone else: forget it
                    continue
                found[path] = (st.st_ctime, st.st_size, path)
        return sorted(found.values())

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.files())

    def prune(self, incoming: int = 0, everything: bool = False) -> list[str]:
        """Delete expired files, then the oldest until the total plus `incoming` bytes fits the limit (or every file
        with `everything`). Returns the paths deleted."""
        import time

        with self._lock:
            files = self.files()
            total = sum(size for _, size, _ in files)
            now = time.time()
            removed = []
            for ctime, size, path in files:
                expired = now - ctime > self.max_age_s
                if not (everything or expired or total + incoming > self.limit_bytes):
                    break  # oldest first: the rest are younger and fit
                if self._delete(path):
                    removed.append(path)
                    total -= size
            return removed

    def _delete(self, path: str) -> bool:
        file = Path(path)
        if not file.resolve().is_relative_to(self.folder):  # never anything outside Gradio's cache folder
            return False
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        for paths in list(self.blocks.temp_file_sets):
            paths.discard(path)
        parent = file.parent  # Gradio keeps each file in a folder named by its hash: remove it once empty
        while parent != self.folder and parent.is_relative_to(self.folder):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def lifespan(self, inner: Any = None) -> Any:
        """A FastAPI lifespan (wrapping `inner`, if any) that prunes every `every_s` seconds while the server runs
        and empties the app's part of the cache when it stops."""
        import asyncio
        import contextlib

        import anyio

        @contextlib.asynccontextmanager
        async def lifespan(server_app: Any) -> Any:
            async def prune_on_schedule() -> None:
                while True:
                    await asyncio.sleep(self.every_s)
                    try:
                        await anyio.to_thread.run_sync(self.prune)
                    except Exception as exc:  # a cache that cannot be pruned must not stop the server
                        logging.getLogger("sd35ui").warning("Could not prune Gradio's cache: %s", exc)

            task = asyncio.create_task(prune_on_schedule())
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(server_app) as state:
                        yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await anyio.to_thread.run_sync(lambda: self.prune(everything=True))

        return lifespan


class CacheGuard:
    """ASGI middleware on uploads (POST /gradio_api/upload): an upload larger than the whole cache is refused with
    413; before one, the oldest files make room for it, and after it the cache is pruned to its limit again."""

    def __init__(self, app: Any, cache: CacheBound) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/gradio_api/upload":
            await self.app(scope, receive, send)
            return
        import anyio
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse

        try:
            incoming = max(0, int(Headers(scope=scope).get("content-length") or 0))
        except ValueError:
            incoming = 0
        limit = self.cache.limit_bytes
        if incoming > limit:
            message = (
                f"This upload ({incoming / 2**20:.1f} MB) is larger than the server's file cache "
                f"({limit / 2**20:.1f} MB, --cache-limit-mb)."
            )
            await PlainTextResponse(message, status_code=413)(scope, receive, send)
            return
        await anyio.to_thread.run_sync(lambda: self.cache.prune(incoming=incoming))
        try:
            await self.app(scope, receive, send)  # Gradio moves the files into place before this returns
        finally:
            await anyio.to_thread.run_sync(self.cache.prune)


PUBLIC_PATHS = frozenset(
    {
        "/",  # without the login, Gradio answers with the login page (and no app config)
        "/favicon.ico",
        "/theme.css",
        "/gradio_api/theme.css",
        "/robots.txt",
        "/manifest.json",
        "/logout",
        "/gradio_api/startup-events",  # launch() calls it from this machine without a login; idempotent
    }
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")  # the login page's scripts, styles and icons
LOGIN_PATHS = ("/login", "/login/")


class AccessGate:
    """ASGI middleware for `--auth`: a request without the login cookie reaches only the login page, its assets
    and the login itself; everything else (the API, files, uploads, /cancel, /openapi.json, MCP, ...) gets 401,
    whether or not Gradio checks the login on that route. Logins from an address that failed too often get 429
    (`access.LoginLimiter`)."""

    def __init__(self, app: Any, limiter: Any) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection
        from starlette.responses import JSONResponse

        path, method = scope["path"], scope.get("method", "GET")
        address = (scope.get("client") or ("unknown",))[0]
        if scope["type"] == "http" and method == "POST" and path in LOGIN_PATHS:
            await self._login(address, scope, receive, send)
            return
        server_app = scope.get("app")
        if self._logged_in(server_app, HTTPConnection(scope)) or (
            scope["type"] == "http" and method in ("GET", "HEAD") and _is_public(path)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        auth_message = getattr(getattr(server_app, "blocks", None), "auth_message", None)
        body = {"detail": {"error": "Not authenticated", "auth_message": auth_message}}  # as Gradio's login_check
        await JSONResponse(body, status_code=401)(scope, receive, send)

    @staticmethod
    def _logged_in(server_app: Any, connection: Any) -> bool:
        cookie_id = getattr(server_app, "cookie_id", None)
        tokens = getattr(server_app, "tokens", None)
        if cookie_id is None or not tokens:
            return False
        cookies = connection.cookies
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return token is not None and token in tokens

    async def _login(self, address: str, scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        from sd35ui.app.access import too_many_logins_message

        wait = self.limiter.retry_after(address)
        if wait > 0:
            headers = {"Retry-After": str(max(1, round(wait + 0.5)))}
            await JSONResponse({"detail": too_many_logins_message(wait)}, 429, headers)(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.limiter.succeeded(address)
        elif status and 400 <= status[0] < 500 and status[0] != 429:  # wrong user or password, or a malformed form
            self.limiter.failed(address)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

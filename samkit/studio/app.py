"""The studio's ASGI app: the page, and the JSON API of docs/studio/API.md.

Every API handler goes through :func:`_api`: the token (when one is set), the client id, the body
size limit, JSON parsing, and one mapping of samkit's errors to 4xx answers with a message.
Model work runs on the state's worker thread; file work on Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from samkit.engine.exports import annotation_stats
from samkit.errors import DatasetError, ImageError, SamkitError, StateError, VideoError
from samkit.model.sam2 import SAM2Model
from samkit.studio.catalog import OutsideImagesError
from samkit.studio.state import INTERACTIVE, StudioConfig, StudioState, annotation_view

__all__ = ["create_app", "STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "x-studio-token"
TOKEN_COOKIE = "samkit_studio_token"
CLIENT_HEADER = "x-studio-client"
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CATEGORY = 100
log = logging.getLogger("samkit.studio")


class HTTPError(Exception):
    """An answer with a status and a message (raised inside handlers)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(exc: SamkitError) -> int:
    if isinstance(exc, OutsideImagesError):
        return 403
    if isinstance(exc, (ImageError, DatasetError, VideoError)):
        return 422
    if isinstance(exc, StateError):
        return 409
    return 400


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPError(400, "Content-Length must be a number of bytes")
        if int(length) > limit:
            raise HTTPError(413, f"request body of {int(length)} bytes is over the studio's limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, f"request body is over the studio's limit of {limit} bytes")
    return bytes(body)


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    raw = await _read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HTTPError(400, f"{key!r} must be a finite number (image pixels), got {value!r}")
    return float(value)


def _category(body: dict[str, Any]) -> Optional[str]:
    value = body.get("category")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CATEGORY:
        raise HTTPError(400, f"'category' must be a name of at most {MAX_CATEGORY} characters, or null")
    value = value.strip()
    return value or None


def _prompt(body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("type")
    if kind == "point":
        label = body.get("label")
        if label not in (0, 1) or isinstance(label, bool):
            raise HTTPError(400, f"'label' is 1 (positive) or 0 (negative), got {label!r}")
        return {"type": "point", "x": _number(body, "x"), "y": _number(body, "y"), "label": int(label)}
    if kind == "box":
        box = body.get("box")
        if not isinstance(box, list) or len(box) != 4:
            raise HTTPError(400, f"'box' is [x0, y0, x1, y1] in image pixels, got {box!r}")
        return {"type": "box", "box": [_number({"box": v}, "box") for v in box]}
    raise HTTPError(400, f"'type' is 'point' or 'box', got {kind!r}")


Handler = Callable[[Request, StudioState, str, dict[str, Any]], Awaitable[Any]]


def _api(handler: Handler, *, image: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an API handler: token, client id, image id, body, errors -> JSON answers."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        state: StudioState = request.app.state.studio
        try:
            token = state.config.token
            if token is not None:
                given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
                if not hmac.compare_digest(given.encode(), token.encode()):
                    raise HTTPError(401, "this studio needs its token: open the URL printed at start "
                                         "(with ?token=...) or send the X-Studio-Token header")
            client = request.headers.get(CLIENT_HEADER, "default")
            if not _CLIENT_ID.fullmatch(client):
                raise HTTPError(400, "X-Studio-Client must be 1-64 characters of A-Z a-z 0-9 _ -")
            if image:
                image_id = request.path_params["image_id"]
                if not state.catalog.has(image_id):
                    raise HTTPError(404, f"no image {image_id}: the studio has images 0 to {len(state.catalog) - 1}"
                                    if len(state.catalog) else f"no image {image_id}: the studio has no images")
            body = await _json_body(request, state.config.max_body_bytes) if request.method in ("POST", "PATCH") else {}
            result = await handler(request, state, client, body)
        except HTTPError as exc:
            return _error(exc.status, exc.message)
        except SamkitError as exc:
            return _error(_status_of(exc), str(exc))
        except Exception:  # a bug, not bad input: logged, answered without internals
            log.exception("studio request %s %s failed", request.method, request.url.path)
            return _error(500, "the studio failed on this request (see the server's log)")
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


# ---------------------------------------------------------------------- handlers
async def info(request: Request, state: StudioState, client: str, body: dict) -> dict:
    annotated = sum(state.store.summary(i)[0] != "untouched" for i in range(len(state.catalog)))
    return {"images": len(state.catalog), "annotated": annotated, "model": state.model_description,
            "propose": state.config.propose, "max_body_bytes": state.config.max_body_bytes}


async def list_images(request: Request, state: StudioState, client: str, body: dict) -> dict:
    def listing() -> list[dict]:
        rows = []
        for i in range(len(state.catalog)):
            status, count = state.store.summary(i)
            rows.append({"id": i, "name": state.catalog.name(i), "kind": state.catalog.kind(i), "status": status,
                         "annotations": count})
        return rows
    return {"images": await run_in_threadpool(listing)}


async def get_image(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id = request.path_params["image_id"]
    view = await state.worker.run(INTERACTIVE, state.image_view, client, image_id)
    state.prefetch(image_id)
    if state.config.propose:
        state.proposals.start(image_id)
    return view


async def image_file(request: Request, state: StudioState, client: str, body: dict) -> Response:
    loaded = await run_in_threadpool(state.catalog.load, request.path_params["image_id"])
    return Response(loaded.jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})


async def prompt(request: Request, state: StudioState, client: str, body: dict) -> Any:
    return await state.worker.run(INTERACTIVE, state.prompt, client, request.path_params["image_id"], _prompt(body))


async def choose(request: Request, state: StudioState, client: str, body: dict) -> Any:
    candidate = body.get("candidate")
    if not isinstance(candidate, int) or isinstance(candidate, bool):
        raise HTTPError(400, f"'candidate' is the index of a candidate mask (0, 1 or 2), got {candidate!r}")
    return await state.worker.run(INTERACTIVE, state.choose, client, request.path_params["image_id"], candidate)


async def undo(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id = request.path_params["image_id"]

    def work() -> dict:
        undone = state.undo(client, image_id)
        return {"undone": undone, "current": state.current(client, image_id),
                "annotations": state.annotations(image_id), "status": state.store.summary(image_id)[0]}
    return await state.worker.run(INTERACTIVE, work)


async def clear(request: Request, state: StudioState, client: str, body: dict) -> dict:
    await state.worker.run(INTERACTIVE, state.clear, client, request.path_params["image_id"])
    return {"current": None}


async def accept(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id = request.path_params["image_id"]
    ann = await state.worker.run(INTERACTIVE, state.accept, client, image_id, _category(body))
    return {"annotation": ann, "status": state.store.summary(image_id)[0]}


def _annotation_id(request: Request) -> int:
    return request.path_params["annotation_id"]


async def update_annotation(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id, aid = request.path_params["image_id"], _annotation_id(request)
    if "category" not in body:
        raise HTTPError(400, "send {'category': name or null} to rename an annotation")
    category = _category(body)

    def work() -> dict:
        hw = state.catalog.load(image_id).hw
        try:
            return state.store.update(image_id, hw, aid, category=category)
        except KeyError:
            raise HTTPError(404, f"image {image_id} has no annotation {aid}") from None
    return annotation_view(await state.worker.run(INTERACTIVE, work))


async def delete_annotation(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id, aid = request.path_params["image_id"], _annotation_id(request)

    def work() -> dict:
        hw = state.catalog.load(image_id).hw
        try:
            state.store.remove(image_id, hw, aid)
        except KeyError:
            raise HTTPError(404, f"image {image_id} has no annotation {aid}") from None
        return {"deleted": aid, "status": state.store.summary(image_id)[0]}
    return await state.worker.run(INTERACTIVE, work)


async def set_done(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id = request.path_params["image_id"]
    done = body.get("done")
    if not isinstance(done, bool):
        raise HTTPError(400, f"'done' is true or false, got {done!r}")

    def work() -> dict:
        status = state.store.set_done(image_id, state.catalog.load(image_id).hw, done)
        return {"status": status, "done": status == "done"}
    return await state.worker.run(INTERACTIVE, work)


async def start_proposals(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id = request.path_params["image_id"]
    state.proposals.start(image_id)
    return await run_in_threadpool(state.proposals.view, client, image_id)


async def get_proposals(request: Request, state: StudioState, client: str, body: dict) -> dict:
    return await run_in_threadpool(state.proposals.view, client, request.path_params["image_id"])


async def accept_proposal(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id, pid = request.path_params["image_id"], request.path_params["proposal_id"]
    category = _category(body)

    def work() -> dict:
        try:
            return state.proposals.accept(client, image_id, pid, category)
        except KeyError:
            raise HTTPError(404, f"image {image_id} has no proposal {pid}") from None
    ann = await state.worker.run(INTERACTIVE, work)
    return {"annotation": ann, "status": state.store.summary(image_id)[0]}


async def reject_proposal(request: Request, state: StudioState, client: str, body: dict) -> dict:
    image_id, pid = request.path_params["image_id"], request.path_params["proposal_id"]

    def work() -> dict:
        try:
            state.proposals.reject(image_id, pid)
        except KeyError:
            raise HTTPError(404, f"image {image_id} has no proposal {pid}") from None
        return {"proposal": pid, "status": "rejected"}
    return await state.worker.run(INTERACTIVE, work)


async def stats(request: Request, state: StudioState, client: str, body: dict) -> dict:
    def work() -> dict:
        figures = annotation_stats(list(state.store.records()))
        figures["images"] = len(state.catalog)
        return figures
    return await run_in_threadpool(work)


# ---------------------------------------------------------------------- videos
def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(400, f"{key!r} must be an integer, got {value!r}")
    return value


async def _video(request: Request, state: StudioState):
    image_id = request.path_params["image_id"]
    if state.catalog.kind(image_id) != "video":
        raise HTTPError(404, f"entry {image_id} is an image, not a video: open it with /api/images/{image_id}")
    return await run_in_threadpool(state.video, image_id)


def _object_missing(video_id: int, obj: int) -> HTTPError:
    return HTTPError(404, f"video {video_id} has no object {obj}: create one with POST /api/videos/{video_id}/objects")


async def get_video(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    image_id = request.path_params["image_id"]
    return {"id": image_id, "name": state.catalog.name(image_id), "kind": "video", **video.view()}


async def video_frame(request: Request, state: StudioState, client: str, body: dict) -> Response:
    video = await _video(request, state)
    jpeg = await run_in_threadpool(video.frame_jpeg, request.path_params["frame"])
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})


async def video_frame_masks(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    return await run_in_threadpool(video.frame_masks, request.path_params["frame"])


async def add_video_object(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    return await run_in_threadpool(video.add_object, _name(body))


def _name(body: dict[str, Any]) -> Optional[str]:
    return _category({"category": body.get("name")})


async def rename_video_object(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    obj = request.path_params["obj"]
    try:
        return await run_in_threadpool(video.rename_object, obj, _name(body))
    except KeyError:
        raise _object_missing(request.path_params["image_id"], obj) from None


async def delete_video_object(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    obj = request.path_params["obj"]
    try:
        await state.worker.run(INTERACTIVE, video.delete_object, obj)
    except KeyError:
        raise _object_missing(request.path_params["image_id"], obj) from None
    return {"deleted": obj}


async def video_prompt(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    frame, obj, prompt_ = _int(body, "frame"), _int(body, "obj"), _prompt(body)
    try:
        return await state.worker.run(INTERACTIVE, video.prompt, frame, obj, prompt_)
    except KeyError:
        raise _object_missing(request.path_params["image_id"], obj) from None


async def video_clear(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    frame, obj = _int(body, "frame"), _int(body, "obj")
    try:
        return await state.worker.run(INTERACTIVE, video.clear, frame, obj)
    except KeyError:
        raise _object_missing(request.path_params["image_id"], obj) from None


async def video_track(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    direction = body.get("direction", "both")
    job = await state.worker.run(INTERACTIVE, video.start_track, direction)
    state.video_worker.submit(INTERACTIVE, video.run_track, job)
    return job.view()


async def video_cancel(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    video.job.cancel.set()
    return video.job.view()


async def video_job(request: Request, state: StudioState, client: str, body: dict) -> dict:
    return (await _video(request, state)).job.view()


async def video_events(request: Request, state: StudioState, client: str, body: dict) -> Response:
    video = await _video(request, state)
    job = video.job

    async def events():
        sent = 0
        while True:
            while sent < len(job.events):
                yield f"event: progress\ndata: {json.dumps(job.events[sent])}\n\n"
                sent += 1
            if job.state != "running":
                yield f"event: end\ndata: {json.dumps(job.view())}\n\n"
                return
            await asyncio.sleep(0.1)
    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def video_overlay(request: Request, state: StudioState, client: str, body: dict) -> dict:
    video = await _video(request, state)
    path = await state.video_worker.run(INTERACTIVE, video.write_overlay)
    return {"file": path.relative_to(state.config.out_dir).as_posix()}


# ---------------------------------------------------------------------- the page
async def index(request: Request) -> Response:
    state: StudioState = request.app.state.studio
    token = request.query_params.get("token")
    if token is not None and state.config.token is not None:
        if not hmac.compare_digest(token.encode(), state.config.token.encode()):
            return _error(401, "wrong token: open the URL the studio printed at start")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class _PageFiles(StaticFiles):
    """The page's files, revalidated on every load (a new samkit's page is never run from cache)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def create_app(config: StudioConfig, *, model: SAM2Model, model_description: str = "") -> Starlette:
    """The studio as an ASGI app (serve it with uvicorn). ``model`` runs every prediction;
    ``model_description`` is shown on the page (what :func:`samkit.builder.load_model` says)."""
    state = StudioState(config, model, model_description or model.cfg.name)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        state.close()

    img = "/api/images/{image_id:int}"
    vid = "/api/videos/{image_id:int}"
    routes = [
        Route("/", index),
        Route("/api/info", _api(info, image=False)),
        Route("/api/images", _api(list_images, image=False)),
        Route("/api/stats", _api(stats, image=False)),
        Route(img, _api(get_image)),
        Route(f"{img}/file", _api(image_file)),
        Route(f"{img}/prompt", _api(prompt), methods=["POST"]),
        Route(f"{img}/choose", _api(choose), methods=["POST"]),
        Route(f"{img}/undo", _api(undo), methods=["POST"]),
        Route(f"{img}/clear", _api(clear), methods=["POST"]),
        Route(f"{img}/accept", _api(accept), methods=["POST"]),
        Route(f"{img}/done", _api(set_done), methods=["POST"]),
        Route(f"{img}/annotations/{{annotation_id:int}}", _api(update_annotation), methods=["PATCH"]),
        Route(f"{img}/annotations/{{annotation_id:int}}", _api(delete_annotation), methods=["DELETE"]),
        Route(f"{img}/proposals", _api(get_proposals), methods=["GET"]),
        Route(f"{img}/proposals", _api(start_proposals), methods=["POST"]),
        Route(f"{img}/proposals/{{proposal_id:int}}/accept", _api(accept_proposal), methods=["POST"]),
        Route(f"{img}/proposals/{{proposal_id:int}}/reject", _api(reject_proposal), methods=["POST"]),
        Route(vid, _api(get_video)),
        Route(f"{vid}/frames/{{frame:int}}", _api(video_frame)),
        Route(f"{vid}/frames/{{frame:int}}/masks", _api(video_frame_masks)),
        Route(f"{vid}/objects", _api(add_video_object), methods=["POST"]),
        Route(f"{vid}/objects/{{obj:int}}", _api(rename_video_object), methods=["PATCH"]),
        Route(f"{vid}/objects/{{obj:int}}", _api(delete_video_object), methods=["DELETE"]),
        Route(f"{vid}/prompt", _api(video_prompt), methods=["POST"]),
        Route(f"{vid}/clear", _api(video_clear), methods=["POST"]),
        Route(f"{vid}/track", _api(video_track), methods=["POST"]),
        Route(f"{vid}/cancel", _api(video_cancel), methods=["POST"]),
        Route(f"{vid}/job", _api(video_job)),
        Route(f"{vid}/events", _api(video_events)),
        Route(f"{vid}/overlay", _api(video_overlay), methods=["POST"]),
        Mount("/static", _PageFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.studio = state
    return app

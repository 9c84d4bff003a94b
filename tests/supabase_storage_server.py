"""The Supabase Storage contract we rely on, as a local test double.

THIS FILE IS THE DOCUMENTED CONTRACT. It speaks the Storage REST API the way the real server was observed to
behave in /work/shared/SUPABASE_STORAGE.md (supabase/storage v1.11.2 with supabase-py / storage3 2.34.1); when
that document and this file disagree, the document wins and this file is the bug. Behaviours the document does
not record are marked ASSUMED below; keep them few.

Recorded behaviours reproduced here:
- routes under `/storage/v1` (the gateway prefix; the bare server paths are accepted too);
- only `Authorization: Bearer <HS256 JWT>` is checked (`apikey` is ignored); the `role` claim decides:
  `service_role` bypasses row-level security, any other role (`anon`) is refused writes;
- every error is HTTP 400 with the real status as a STRING in the JSON body:
    duplicate without upsert      {"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"KeyAlreadyExists"}
    bucket missing                {"statusCode":"404","error":"Bucket not found","message":"Bucket not found","code":"NoSuchBucket"}
    object missing (public URL)   {"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}
    bad signature/garbage/expired {"statusCode":"403","error":"Unauthorized","message":"signature verification failed"
                                   | "Invalid Compact JWS" | "\\"exp\\" claim timestamp check failed","code":"AccessDenied"}
    no Authorization header       {"statusCode":"400","message":"headers must have required property 'authorization'","code":"InvalidRequest"}
    anon key, no policy           statusCode "403", message "new row violates row-level security policy"
    type not allowed by bucket    {"statusCode":"415","error":"invalid_mime_type","message":"mime type text/plain is not supported","code":"InvalidMimeType"}
- upload `POST /object/{bucket}/{path}` (multipart `file` part, as storage3 sends it; the part's Content-Type is
  stored as given, no sniffing); upsert when the `x-upsert` header is "true";
- public object `GET /object/public/{bucket}/{path}` served with the stored Content-Type;
- sign `POST /object/sign/{bucket}/{path}` {"expiresIn": ...} -> {"signedURL": "/object/sign/{bucket}/{path}?token=..."};
- a standard upload above the server's limit (`upload_limit`, 50 MiB as UPLOAD_FILE_SIZE_LIMIT_STANDARD in the
  sample configuration) or the bucket's `file_size_limit` is refused: statusCode "413", EntityTooLarge;
- a stalled server finishes a request its client gave up on (`stall_next`): the upload still lands;
- a restart is an outage of a few seconds (`fail_for`: every request in the window answered 5xx).

ASSUMED (not in the document): the exact JSON of a successful upload ({"Key","Id"}) and of GET /bucket/{id}
(the fields storage3's BaseBucket model needs); a signed-URL download with a bad token answers 400 statusCode
"400" "InvalidJWT"; the public route answers "Object not found" for a private or missing bucket; an anon
sign/read/list sees nothing ("Object not found" / "Bucket not found" / []); DELETE /object/{bucket} answers the
removed objects; an unknown route answers HTTP 404. Injected failures (`fail_next`, `drop_next`) stand for a
gateway in trouble: a real 5xx on the wire, or a connection closed without an answer.

Usage:
    with running_storage_server(buckets={"project-images": {"public": True, "allowed_mime_types": ["image/png"]}}) as s:
        s.url, s.service_key, s.anon_key, s.objects["project-images/renders/x.png"].content_type
        s.fail_next(2, status=503)      # next 2 requests answered 503 (in_body=True: HTTP 400 + statusCode "503")
        s.drop_next(1)                  # next request read, then the connection closed without an answer
        s.stall_next(1, 2.0)            # next request held 2 s, then handled (whether its client waited or not)
        s.fail_for(3.0, status=503)     # every request of the next 3 s answered 503 (a restart)
        s.requests                      # [(method, path, answered status or "dropped"), ...]
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import jwt

TEST_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
PREFIX = "/storage/v1"


def make_key(role: str, secret: str = TEST_JWT_SECRET, expires_in: int = 3600) -> str:
    """An HS256 API key like Supabase's (`role` claim); a negative expires_in gives an expired key."""
    now = int(time.time())
    return jwt.encode({"role": role, "iss": "supabase-demo", "iat": now - 60, "exp": now + expires_in}, secret, "HS256")


@dataclass
class StoredObject:
    body: bytes
    content_type: str
    cache_control: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Bucket:
    id: str
    public: bool = False
    allowed_mime_types: list[str] | None = None
    file_size_limit: int | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


class _Failure(Exception):
    def __init__(self, status_code: str, error: str | None, message: str, code: str) -> None:
        self.body = {"statusCode": status_code, **({"error": error} if error is not None else {}), "message": message,
                     "code": code}


def _bucket_not_found() -> _Failure:
    return _Failure("404", "Bucket not found", "Bucket not found", "NoSuchBucket")


def _object_not_found() -> _Failure:
    return _Failure("404", "not_found", "Object not found", "NoSuchKey")


class StorageServer:
    """State and fault switches of one running double; see the module docstring."""

    def __init__(self, buckets: dict[str, dict], secret: str = TEST_JWT_SECRET) -> None:
        self.secret = secret
        self.buckets = {name: Bucket(id=name, **opts) for name, opts in buckets.items()}
        self.objects: dict[str, StoredObject] = {}  # "bucket/path" -> object
        self.requests: list[tuple[str, str, int | str]] = []
        self.service_key = make_key("service_role", secret)
        self.anon_key = make_key("anon", secret)
        self.url = ""  # set once listening: the SUPABASE_URL (no /storage/v1)
        self._lock = threading.Lock()
        self._fail: list[tuple[int, bool]] = []
        self._drop = 0
        self._stall: list[float] = []
        self._outage: tuple[float, int] | None = None  # (until monotonic, status)
        self.upload_limit = 50 * 1024 * 1024

    def fail_next(self, n: int, status: int = 503, in_body: bool = False) -> None:
        """Answer the next n requests with `status` (a real 5xx on the wire; in_body: HTTP 400 + status string)."""
        with self._lock:
            self._fail = [(status, in_body)] * n

    def drop_next(self, n: int) -> None:
        """Read the next n requests, then close their connections without answering."""
        with self._lock:
            self._drop = n

    def stall_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._stall = [seconds] * n

    def fail_for(self, seconds: float, status: int = 503) -> None:
        with self._lock:
            self._outage = (time.monotonic() + seconds, status)

    def take_stall(self) -> float:
        with self._lock:
            return self._stall.pop(0) if self._stall else 0.0

    def _take_fault(self) -> str | tuple[int, bool] | None:
        with self._lock:
            if self._outage is not None:
                until, status = self._outage
                if time.monotonic() < until:
                    return status, False
                self._outage = None
            if self._drop > 0:
                self._drop -= 1
                return "drop"
            if self._fail:
                return self._fail.pop(0)
        return None

    # --- auth ---------------------------------------------------------------------------------------------

    def role(self, headers) -> str:
        auth = headers.get("Authorization")
        if not auth:
            raise _Failure("400", None, "headers must have required property 'authorization'", "InvalidRequest")
        token = auth[7:] if auth.lower().startswith("bearer ") else auth
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise _Failure("403", "Unauthorized", '"exp" claim timestamp check failed', "AccessDenied") from None
        except jwt.InvalidSignatureError:
            raise _Failure("403", "Unauthorized", "signature verification failed", "AccessDenied") from None
        except jwt.InvalidTokenError:
            raise _Failure("403", "Unauthorized", "Invalid Compact JWS", "AccessDenied") from None
        return str(claims.get("role", "anon"))

    # --- routes -------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, headers, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        try:
            if method == "GET" and parts[:2] == ["object", "public"] and len(parts) >= 4:
                return self._public_get(parts[2], "/".join(parts[3:]))
            if method == "GET" and parts[:2] == ["object", "sign"] and len(parts) >= 4:
                return self._signed_get(parts[2], "/".join(parts[3:]), query.get("token", ""))
            if method == "POST" and parts[:2] == ["object", "sign"] and len(parts) >= 4:
                return self._sign(self.role(headers), parts[2], "/".join(parts[3:]), body)
            if method in ("POST", "PUT") and parts[0] == "object" and len(parts) >= 3:
                return self._upload(self.role(headers), method, parts[1], "/".join(parts[2:]), headers, body)
            if method == "DELETE" and parts[0] == "object" and len(parts) == 2:
                return self._remove(self.role(headers), parts[1], body)
            if method == "GET" and parts[0] == "bucket" and len(parts) == 2:
                return self._get_bucket(self.role(headers), parts[1])
        except _Failure as exc:
            return _json(400, exc.body)
        return _json(404, {"statusCode": 404, "error": "Not Found", "message": f"Route {method}:{path} not found"})

    def _bucket(self, name: str) -> Bucket:
        if name not in self.buckets:
            raise _bucket_not_found()
        return self.buckets[name]

    def _upload(self, role, method, bucket_name, key, headers, body):
        bucket = self._bucket(bucket_name)
        if role != "service_role":
            raise _Failure("403", "Unauthorized", "new row violates row-level security policy", "AccessDenied")
        data, content_type, cache_control = _parse_upload(headers, body)
        if bucket.allowed_mime_types and not any(_mime_matches(content_type, p) for p in bucket.allowed_mime_types):
            base_type = content_type.split(";")[0].strip()
            raise _Failure("415", "invalid_mime_type", f"mime type {base_type} is not supported", "InvalidMimeType")
        if len(data) > self.upload_limit or (bucket.file_size_limit is not None and len(data) > bucket.file_size_limit):
            raise _Failure("413", "Payload too large", "The object exceeded the maximum allowed size", "EntityTooLarge")
        full = f"{bucket_name}/{key}"
        with self._lock:
            exists = full in self.objects
            if method == "POST" and exists and headers.get("x-upsert", "false").lower() != "true":
                raise _Failure("409", "Duplicate", "The resource already exists", "KeyAlreadyExists")
            if method == "PUT" and not exists:
                raise _object_not_found()
            obj = StoredObject(data, content_type, cache_control)
            self.objects[full] = obj
        return _json(200, {"Key": full, "Id": obj.id})

    def _public_get(self, bucket_name, key):
        bucket = self.buckets.get(bucket_name)
        obj = self.objects.get(f"{bucket_name}/{key}")
        if bucket is None or not bucket.public or obj is None:
            raise _object_not_found()
        return 200, {"Content-Type": obj.content_type, "Cache-Control": f"max-age={obj.cache_control}"}, obj.body

    def _sign(self, role, bucket_name, key, body):
        self._bucket(bucket_name)
        if role != "service_role" or f"{bucket_name}/{key}" not in self.objects:
            raise _object_not_found()
        try:
            expires_in = int(json.loads(body or b"{}").get("expiresIn", 0))
        except (ValueError, AttributeError):
            expires_in = 0
        if expires_in < 1:
            raise _Failure("400", "InvalidRequest", "body/expiresIn must be >= 1", "InvalidRequest")
        now = int(time.time())
        token = jwt.encode({"url": f"{bucket_name}/{key}", "iat": now, "exp": now + expires_in}, self.secret, "HS256")
        quoted = urllib.parse.quote(f"{bucket_name}/{key}")
        return _json(200, {"signedURL": f"/object/sign/{quoted}?token={token}"})

    def _signed_get(self, bucket_name, key, token):
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as exc:
            raise _Failure("400", "InvalidJWT", str(exc), "InvalidJWT") from None
        if claims.get("url") != f"{bucket_name}/{key}":
            raise _Failure("400", "InvalidSignature", "The url do not match the signature", "InvalidSignature")
        obj = self.objects.get(f"{bucket_name}/{key}")
        if obj is None:
            raise _object_not_found()
        return 200, {"Content-Type": obj.content_type, "Cache-Control": f"max-age={obj.cache_control}"}, obj.body

    def _remove(self, role, bucket_name, body):
        self._bucket(bucket_name)
        try:
            prefixes = json.loads(body or b"{}").get("prefixes") or []
        except (ValueError, AttributeError):
            prefixes = []
        removed = []
        if role == "service_role":
            with self._lock:
                for key in prefixes:
                    obj = self.objects.pop(f"{bucket_name}/{key}", None)
                    if obj is not None:
                        removed.append({"name": key, "bucket_id": bucket_name, "id": obj.id})
        return _json(200, removed)

    def _get_bucket(self, role, name):
        bucket = self._bucket(name)
        if role != "service_role":
            raise _bucket_not_found()
        return _json(200, {"id": bucket.id, "name": bucket.id, "owner": "", "public": bucket.public,
                           "type": "STANDARD", "file_size_limit": bucket.file_size_limit,
                           "allowed_mime_types": bucket.allowed_mime_types, "created_at": bucket.created_at,
                           "updated_at": bucket.created_at})


def _json(status: int, payload) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(payload).encode()


def _mime_matches(content_type: str, pattern: str) -> bool:
    base = content_type.split(";")[0].strip().lower()
    pattern = pattern.lower()
    return base == pattern or (pattern.endswith("/*") and base.startswith(pattern[:-1]))


def _parse_upload(headers, body: bytes) -> tuple[bytes, str, str]:
    """(data, content type, cache control) of an upload: a multipart `file` part, or the raw body."""
    content_type = headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(  # compat32: headers kept raw
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, tuple[bytes, str]] = {}  # name -> (data, Content-Type exactly as sent)
        for part in message.get_payload() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_payload(decode=True) or b"", str(part.get("Content-Type") or ""))
        if "file" not in fields:
            raise _Failure("400", "InvalidRequest", "No file was uploaded", "InvalidRequest")
        data, part_type = fields["file"]
        cache = fields.get("cacheControl", (b"no-cache", ""))[0].decode() or "no-cache"
        return data, part_type or "application/octet-stream", cache
    return body, content_type or "application/octet-stream", headers.get("Cache-Control", "no-cache")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    storage: StorageServer  # set on the subclass made per server

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._read_body()
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        if path.startswith(PREFIX + "/"):
            path = path[len(PREFIX):]
        query = dict(urllib.parse.parse_qsl(split.query))
        stall = self.storage.take_stall()
        if stall:
            time.sleep(stall)  # then carry on: the client may have given up, the work is still done
        fault = self.storage._take_fault()
        if fault == "drop":
            self.storage.requests.append((self.command, split.path, "dropped"))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        if fault is not None:
            status, in_body = fault
            if in_body:
                status_code, headers, payload = _json(400, {"statusCode": str(status), "error": "internal",
                                                            "message": "Internal Server Error", "code": "InternalError"})
            else:
                status_code, headers, payload = status, {"Content-Type": "text/plain"}, b"upstream unavailable"
        else:
            try:
                status_code, headers, payload = self.storage.handle(self.command, path, query, self.headers, body)
            except Exception as exc:  # a bug in the double: answer loudly instead of hanging up
                status_code, headers, payload = _json(500, {"statusCode": "500", "error": "double_bug",
                                                            "message": f"{type(exc).__name__}: {exc}"})
        self.storage.requests.append((self.command, split.path, status_code))
        self.send_response(status_code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


@contextlib.contextmanager
def running_storage_server(
    buckets: dict[str, dict] | None = None, host: str = "127.0.0.1", secret: str = TEST_JWT_SECRET
) -> Iterator[StorageServer]:
    """Run the double on `host` (ephemeral port) in a thread; yields its StorageServer."""
    storage = StorageServer(buckets if buckets is not None else
                            {"project-images": {"public": True, "allowed_mime_types": ["image/png"]}}, secret)
    handler = type("Handler", (_Handler,), {"storage": storage})
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    storage.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield storage
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""Streaming multipart/form-data parsing straight into storage.

An upload may be gigabytes, so the body is never held in memory: each chunk that
belongs to the file part goes to an `ObjectWriter` as it arrives, and the size limit
is enforced while streaming, so an oversized upload stops being read the moment it
crosses the limit. On any failure (too large, malformed body, client gone) the writer
is aborted before the error propagates, and on success it is committed, so the caller
never sees a half-written object. Text fields are small and kept in memory, bounded by
`max_field_bytes` and `max_fields`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from hark.errors import RequestError, UploadTooLargeError
from hark.filenames import clean_filename
from hark.storage.base import ObjectWriter

DEFAULT_FILENAME = "upload"
# RFC 2046 §5.1.1 allows boundaries of 1-70 characters.
_MAX_BOUNDARY_CHARS = 70


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str | None
    size: int


@dataclass
class ParsedForm:
    fields: dict[str, list[str]]
    """Text fields; a name sent several times keeps all its values, in order."""
    file: UploadedFile | None
    """The (first) file part, committed to storage; None when the form had none."""
    files: list[UploadedFile] = field(default_factory=list)
    """Every file part, in order (more than one only when `max_files` > 1)."""


def _body_error(message: str) -> RequestError:
    return RequestError(message, field="body")


def _boundary(content_type: str | None) -> bytes:
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        shown = media_type.decode("latin-1") or "none"
        raise _body_error(f"Expected a multipart/form-data body, got content type {shown!r}")
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise _body_error("The multipart/form-data content type has no boundary")
    if len(boundary) > _MAX_BOUNDARY_CHARS:
        raise _body_error(f"The multipart boundary is longer than {_MAX_BOUNDARY_CHARS} characters")
    return boundary


def _decode_header_text(raw: bytes) -> str:
    """Header parameters arrive as raw bytes; browsers send UTF-8, old clients Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _clean_filename(raw: bytes | None) -> str:
    """The client's file name, reduced to a plain base name (never a path)."""
    if raw is None:
        return DEFAULT_FILENAME
    return clean_filename(_decode_header_text(raw), default=DEFAULT_FILENAME)


class _FormState:
    """The parser's callbacks and what they collect, for one request body."""

    def __init__(
        self,
        open_writer: Callable[[str, str | None], ObjectWriter],
        *,
        file_field: str,
        max_file_bytes: int,
        max_field_bytes: int,
        max_fields: int,
        max_files: int,
    ) -> None:
        self.open_writer = open_writer
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.max_field_bytes = max_field_bytes
        self.max_fields = max_fields
        self.max_files = max_files

        self.fields: dict[str, list[str]] = {}
        self.files: list[UploadedFile] = []
        self.writers: list[ObjectWriter] = []
        self.finished = False
        self.field_count = 0

        # The part being parsed.
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, str] = {}
        self.name = ""
        self.text: bytearray | None = None  # set while in a text field
        self.writer: ObjectWriter | None = None  # set while in a file part
        self.upload: UploadedFile | None = None
        self.filename_empty = False

    def on_part_begin(self) -> None:
        self.headers = {}
        self.text = None
        self.writer = None
        self.upload = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self.header_name.decode("latin-1").strip().lower()
        self.headers[name] = self.header_value.decode("latin-1").strip()
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get("content-disposition"))
        if disposition != b"form-data":
            raise _body_error("A multipart part has no 'Content-Disposition: form-data' header")
        raw_name = params.get(b"name")
        if raw_name is None:
            raise _body_error("A multipart part has no field name")
        try:
            self.name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise _body_error("A multipart field name is not valid UTF-8") from None
        raw_filename = params.get(b"filename")
        if raw_filename is None and self.name != self.file_field:
            self.field_count += 1
            if self.field_count > self.max_fields:
                raise RequestError(
                    f"Too many form fields (at most {self.max_fields})", field="body"
                )
            self.text = bytearray()
            return
        if self.name != self.file_field:
            raise RequestError(
                f"Unexpected file in field {self.name!r}; send the file as {self.file_field!r}",
                field=self.name,
            )
        if len(self.files) >= self.max_files:
            allowed = "one file" if self.max_files == 1 else f"{self.max_files} files"
            raise RequestError(f"At most {allowed} may be sent", field=self.file_field)
        # A browser sends an unselected file input as filename="" with no content.
        self.filename_empty = raw_filename is not None and not raw_filename.strip()
        content_type = self.headers.get("content-type") or None
        self.upload = UploadedFile(self.name, _clean_filename(raw_filename), content_type, 0)
        self.writer = self.open_writer(self.upload.filename, content_type)
        self.writers.append(self.writer)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        writer = self.writer
        if writer is not None:
            upload = self.upload
            assert upload is not None
            size = upload.size + (end - start)
            if size > self.max_file_bytes:
                raise UploadTooLargeError(
                    f"The file is larger than the upload limit of {self.max_file_bytes} bytes",
                    field=self.file_field,
                    limit=self.max_file_bytes,
                )
            # Most calls cover the whole network chunk: pass it on without a copy.
            writer.write(data if start == 0 and end == len(data) else data[start:end])
            upload.size = size
            return
        text = self.text
        if text is None:  # pragma: no cover - the parser only sends data after headers
            raise _body_error("Multipart data outside of a part")
        if len(text) + (end - start) > self.max_field_bytes:
            raise RequestError(
                f"Form field {self.name!r} is longer than {self.max_field_bytes} bytes",
                field=self.name,
            )
        text += data[start:end]

    def on_part_end(self) -> None:
        if self.writer is not None:
            upload = self.upload
            assert upload is not None
            if self.filename_empty and upload.size == 0:
                self.writer.abort()  # no file chosen: not an upload at all
                self.writers.remove(self.writer)
            else:
                self.files.append(upload)
        elif self.text is not None:
            try:
                value = self.text.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(
                    f"Form field {self.name!r} is not valid UTF-8", field=self.name
                ) from None
            self.fields.setdefault(self.name, []).append(value)
        self.writer = None
        self.text = None

    def on_end(self) -> None:
        self.finished = True

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()


async def parse_form(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    open_writer: Callable[[str, str | None], ObjectWriter],
    *,
    file_field: str = "file",
    max_file_bytes: int,
    max_field_bytes: int = 65536,
    max_fields: int = 200,
    max_files: int = 1,
) -> ParsedForm:
    """Parse a multipart/form-data body, streaming its file part into storage.

    `open_writer(filename, content_type)` is called once the file part's headers are
    read; the returned writer receives the file's bytes and is committed when the whole
    body has parsed, or aborted on any error. Errors: `RequestError` (field "body") for
    a body that is not well-formed multipart; `RequestError` naming the field for a bad
    field or a file under another name; `UploadTooLargeError` past `max_file_bytes`
    (raised at once, the rest of the body unread). Errors from `chunks` itself (the
    client went away) propagate unchanged, after the abort.
    """
    state = _FormState(
        open_writer,
        file_field=file_field,
        max_file_bytes=max_file_bytes,
        max_field_bytes=max_field_bytes,
        max_fields=max_fields,
        max_files=max_files,
    )
    try:
        parser = MultipartParser(
            _boundary(content_type),
            callbacks={
                "on_part_begin": state.on_part_begin,
                "on_header_field": state.on_header_field,
                "on_header_value": state.on_header_value,
                "on_header_end": state.on_header_end,
                "on_headers_finished": state.on_headers_finished,
                "on_part_data": state.on_part_data,
                "on_part_end": state.on_part_end,
                "on_end": state.on_end,
            },
        )
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
            if state.finished:
                break  # anything after the closing boundary is an epilogue: ignore it
        if not state.finished:
            raise _body_error("The multipart body ended before its closing boundary")
        for writer in state.writers:
            writer.commit()
    except FormParserError as exc:
        state.abort()
        raise _body_error(f"Malformed multipart body: {exc}") from exc
    except BaseException:
        # Includes cancellation and the client disconnecting mid-body.
        state.abort()
        raise
    files = state.files
    return ParsedForm(fields=state.fields, file=files[0] if files else None, files=files)

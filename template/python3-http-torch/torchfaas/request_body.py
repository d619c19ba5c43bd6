"""The request body, handed over without copying it."""


def request_body(request) -> bytes:
    """The whole body of a Flask `request`.

    waitress hands the app a body it has already received in full, with its length
    in CONTENT_LENGTH (a chunked body's too, once de-chunked), and keeps one under
    its inbuf_overflow (512 KiB) in a BytesIO that holds exactly the body, whose
    getvalue() is that buffer itself. Flask's `get_data()` instead reads it through
    werkzeug's LimitedStream in 64 KiB pieces and copies it again, and even one
    read() copies it, holding the GIL: ~63 µs of CPU for a 110-200 KB photo in the
    served process against ~2 µs (docs/benchmarks.md, "The fast path").
    """
    request.stream  # noqa: B018 reading the property runs werkzeug's checks first: a 413 past MAX_CONTENT_LENGTH
    length = request.content_length
    if length is None:  # a server that streams bodies of unknown length
        return request.get_data()
    if not length:
        return b""
    stream = request.environ["wsgi.input"]
    if hasattr(stream, "getvalue") and stream.tell() == 0:
        whole = stream.getvalue()
        if len(whole) == length:
            stream.seek(length)  # consumed, as a read would leave it
            return whole
    return stream.read(length)  # a file (a larger body) or another server's stream

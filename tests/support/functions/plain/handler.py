"""A plain python3-http handler, unchanged from the classic template's contract."""


def handle(event, context):
    if event.path == "/json":
        return {"statusCode": 201, "body": {"method": event.method, "length": len(event.body)}}
    if event.path == "/text":
        return "hello"
    # echo the bytes back: python3-http would have turned them into "b'...'"
    return {"statusCode": 200, "body": event.body, "headers": {"Content-Type": "application/octet-stream"}}

"""What the load tools send the classifier (`make load|demo|capacity|review`): real photos
as phones and browsers upload them, and the client mistakes it must answer with a 4xx.

Read by load/loadkit/traffic.py (`load_inputs()`), never by the function itself.
"""
from loadkit import traffic  # the photos of load/loadkit/photos.py, re-encoded as JPEG/PNG/WebP at 320-1280 px

# each photo request asks for one of these at random; a 200 carries that many predictions
TOPK = {"topk=1": 1, "topk=3": 3, "topk=5": 5}


def payloads():
    return traffic.build_corpus(queries=TOPK)


def bad_requests():
    # empty body, corrupt bytes, truncated image, topk=0: 400; text/plain: 415
    return traffic.bad_requests()

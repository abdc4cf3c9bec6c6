"""kiln's sample Python app: an HTTP server on $PORT (standard library
only) that answers every request with its instance index and the services
bound to it."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def instance_index():
    try:
        index = json.loads(os.environ.get("VCAP_APPLICATION", "{}")).get("instance_index")
        if isinstance(index, int):
            return index
    except ValueError:
        pass
    try:
        return int(os.environ.get("INSTANCE_INDEX", ""))
    except ValueError:
        return -1


def services():
    try:
        vs = json.loads(os.environ.get("VCAP_SERVICES", "{}"))
    except ValueError:
        vs = {}
    return sorted(s.get("name", "") for lst in vs.values() for s in lst)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        names = services()
        body = "Hello from python! instance %d, %d service(s): %s\n" % (
            instance_index(), len(names), ",".join(names))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print("listening on :%d" % port, flush=True)
    ThreadingHTTPServer(("", port), Handler).serve_forever()

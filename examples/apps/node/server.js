// kiln's sample Node.js app: an HTTP server on $PORT that answers every
// request with its instance index and the services bound to it.
'use strict';
const http = require('http');

function instanceIndex() {
  try {
    const app = JSON.parse(process.env.VCAP_APPLICATION || '{}');
    if (Number.isInteger(app.instance_index)) return app.instance_index;
  } catch (e) { /* fall through */ }
  const i = parseInt(process.env.INSTANCE_INDEX, 10);
  return Number.isNaN(i) ? -1 : i;
}

function services() {
  let vs = {};
  try { vs = JSON.parse(process.env.VCAP_SERVICES || '{}'); } catch (e) { /* none */ }
  const names = [];
  for (const list of Object.values(vs)) {
    for (const s of list) names.push(s.name);
  }
  return names.sort();
}

const port = process.env.PORT || 8080;
http.createServer((req, res) => {
  const names = services();
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`Hello from node! instance ${instanceIndex()}, ${names.length} service(s): ${names.join(',')}\n`);
}).listen(port, () => console.log(`listening on :${port}`));
process.on('SIGTERM', () => process.exit(0));

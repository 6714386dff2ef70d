// loki-push.js — the Loki canary as a k6 script: pushes to the distributor's
// Loki endpoint as Promtail/Alloy would (JSON; gzip with GZIP=true).
// Every line carries its stream and sequence number, so loss and order can
// be checked downstream. Loki's format has no packet id (the distributor
// numbers each push); each push says X-Emitter-ID: <job>-<vu>, so its
// emitter_id in Kafka and in the ledger names the job and VU that sent it
// (<job>: DSPLAB_JOB_ID, set by the platform, else "k6-<start time>").
//
//   TARGET_URL        distributor base URL (default http://localhost:8080)
//   PUSH_PATH         /loki/api/v1/push (or /api/prom/push)
//   TENANTS           X-Scope-OrgID values, one per VU in turn (default k6)
//   STREAMS           streams per push (2), LINES_PER_PUSH per stream (10)
//   LINE_BYTES        approximate line size (100)
//   JITTER_MS         random delay 0..JITTER_MS before each push (0)
//   LABELS            extra stream labels, k=v,k=v (app=k6-canary)
//   GZIP              compress the body (false)
// plus the profile variables of lib/profile.js and thresholds of
// lib/thresholds.js.
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { bool, list, num, str, targetURL, weighted } from './lib/env.js';
import { plan, scenario } from './lib/profile.js';
import { statusCounts, thresholds } from './lib/thresholds.js';
import { summarize } from './lib/summary.js';

const PLAN = plan();
const URL = targetURL('http://localhost:8080') + str('PUSH_PATH', '/loki/api/v1/push');
const TENANTS = list('TENANTS', 'k6');
const STREAMS = Math.max(1, Math.round(num('STREAMS', 2)));
const LINES = Math.max(1, Math.round(num('LINES_PER_PUSH', 10)));
const LINE_BYTES = Math.max(10, Math.round(num('LINE_BYTES', 100)));
const JITTER_MS = Math.max(0, num('JITTER_MS', 0));
const GZIP = bool('GZIP', false);
const LEVEL = weighted('LEVELS', 'info:70,warn:20,error:8,debug:2');
const EXTRA = {};
for (const kv of list('LABELS', 'app=k6-canary')) {
  const [k, v] = kv.split('=');
  EXTRA[k] = v;
}

const pushes = new Counter('loki_pushes');
const linesSent = new Counter('loki_lines_sent');
const linesAccepted = new Counter('loki_lines_accepted');
const bytesSent = new Counter('loki_payload_bytes');

export const options = {
  scenarios: { push: scenario(PLAN, 'push') },
  thresholds: statusCounts(thresholds(), 'http_reqs'),
  tags: { job_id: str('JOB_ID', ''), profile: PLAN.profile },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

let seq = 0;
const PAD = 'y'.repeat(LINE_BYTES);

export function setup() {
  return { job: str('DSPLAB_JOB_ID', '') || `k6-${str('JOB_ID', '') || Date.now().toString(36)}` };
}

export function push(data) {
  if (JITTER_MS > 0) sleep((Math.random() * JITTER_MS) / 1000);
  const vu = exec.vu.idInTest;
  const tenant = TENANTS[(vu - 1) % TENANTS.length];
  // Loki timestamps are nanoseconds as strings; JavaScript numbers cannot
  // hold them, so the nanoseconds are appended as text.
  const ms = Date.now();
  const streams = [];
  for (let s = 0; s < STREAMS; s++) {
    const level = LEVEL(Math.random());
    const values = [];
    for (let l = 0; l < LINES; l++) {
      const n = ++seq;
      const head = `ts=${ms} vu=${vu} stream=${s} seq=${n} level=${level} `;
      values.push([`${ms}${String(n % 1000000).padStart(6, '0')}`, head + PAD.slice(0, Math.max(0, LINE_BYTES - head.length))]);
    }
    streams.push({ stream: Object.assign({ canary: `vu-${vu}`, stream: `s${s}`, level }, EXTRA), values });
  }
  const body = JSON.stringify({ streams });
  const params = {
    headers: { 'Content-Type': 'application/json', 'X-Scope-OrgID': tenant, 'X-Emitter-ID': `${data.job}-${vu}` },
    tags: { name: 'POST loki push' },
  };
  if (GZIP) params.compression = 'gzip';
  const res = http.post(URL, body, params);
  pushes.add(1);
  linesSent.add(STREAMS * LINES);
  bytesSent.add(body.length);
  if (res.status === 204 || res.status === 200) linesAccepted.add(STREAMS * LINES);
}

export function handleSummary(data) {
  return summarize(data, 'loki-push.js', PLAN, ['loki_pushes', 'loki_lines_sent', 'loki_lines_accepted', 'loki_payload_bytes']);
}

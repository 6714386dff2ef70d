// ingest-packets.js — log packets to the distributor's POST /ingest.
//
// Each VU is one emitter ("<EMITTER_PREFIX>-<run>-<vu>") sending packets
// "<job>-<vu>-<n>" with n = 1, 2, 3... in order: an id is unique across
// jobs and says which job, VU and iteration sent it, so the platform's
// delivery ledger can find each packet in Kafka (logs.* and
// ledger.processed) and tell a lost one from a duplicate. <job> is
// DSPLAB_JOB_ID (the platform sets the traffic job's id, t-...), else
// "k6-<run>". A retried packet keeps its id.
//
//   TARGET_URL     distributor base URL (default http://localhost:8080)
//   MIN_MESSAGES, MAX_MESSAGES   messages per packet, uniform (1, 20)
//   MESSAGE_BYTES  approximate size of one message text (120)
//   LEVELS         level weights (info:70,warn:20,error:8,debug:2)
//   TENANTS        comma-separated; emitter i always uses tenant i mod n
//                  (default: no X-Scope-OrgID, the distributor's default tenant)
//   EMITTER_PREFIX (k6), JOB_ID (tags every metric: job_id)
//   DSPLAB_JOB_ID  the packet ids' prefix (set by the platform; default k6-<run>)
//   RETRIES        extra attempts on 429/503 (0); each waits Retry-After
//                  (capped by RETRY_MAX_WAIT, 5s) or 100ms x 2^attempt
// plus the profile variables of lib/profile.js and thresholds of
// lib/thresholds.js.
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { list, num, seconds, str, targetURL, weighted } from './lib/env.js';
import { plan, scenario } from './lib/profile.js';
import { statusCounts, thresholds } from './lib/thresholds.js';
import { summarize } from './lib/summary.js';

const PLAN = plan();
const URL = targetURL('http://localhost:8080') + '/ingest';
const MIN = Math.max(1, Math.round(num('MIN_MESSAGES', 1)));
const MAX = Math.max(MIN, Math.round(num('MAX_MESSAGES', 20)));
const MESSAGE_BYTES = Math.max(10, Math.round(num('MESSAGE_BYTES', 120)));
const LEVEL = weighted('LEVELS', 'info:70,warn:20,error:8,debug:2');
const TENANTS = list('TENANTS', '');
const RETRIES = Math.max(0, Math.round(num('RETRIES', 0)));
const RETRY_MAX_WAIT = seconds(str('RETRY_MAX_WAIT', '5s'));

const packetsSent = new Counter('packets_sent');
const packetsAccepted = new Counter('packets_accepted');
const packetsRejected = new Counter('packets_rejected');
const messagesAccepted = new Counter('messages_accepted');
const retries = new Counter('packet_retries');

export const options = {
  scenarios: { ingest: scenario(PLAN, 'ingest') },
  thresholds: statusCounts(statusCounts(thresholds(), 'packets_rejected'), 'http_reqs'),
  tags: { job_id: str('JOB_ID', ''), profile: PLAN.profile },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

export function setup() {
  // One id for the whole run, shared by every VU: emitter ids stay unique
  // across runs, so packet ids restarting at 1 are not duplicates.
  return { run: str('JOB_ID', '') || Date.now().toString(36) };
}

let seq = 0; // per VU: each VU has its own JavaScript runtime
const PAD = 'x'.repeat(MESSAGE_BYTES);

function packet(emitter, id) {
  const n = MIN + Math.floor(Math.random() * (MAX - MIN + 1));
  const now = new Date().toISOString();
  const messages = [];
  for (let i = 0; i < n; i++) {
    const head = `packet ${id} message ${i} from ${emitter} `;
    messages.push({ timestamp: now, level: LEVEL(Math.random()), message: head + PAD.slice(0, Math.max(0, MESSAGE_BYTES - head.length)) });
  }
  return { n, body: JSON.stringify({ emitter_id: emitter, packet_id: id, messages }) };
}

export function ingest(data) {
  const vu = exec.vu.idInTest;
  const job = str('DSPLAB_JOB_ID', '') || `k6-${data.run}`;
  const emitter = `${str('EMITTER_PREFIX', 'k6')}-${data.run}-${vu}`;
  const headers = { 'Content-Type': 'application/json' };
  if (TENANTS.length > 0) headers['X-Scope-OrgID'] = TENANTS[(vu - 1) % TENANTS.length];
  const id = `${job}-${vu}-${++seq}`;
  const p = packet(emitter, id);
  packetsSent.add(1);
  for (let attempt = 0; ; attempt++) {
    const res = http.post(URL, p.body, { headers, tags: { name: 'POST /ingest' } });
    if (res.status === 202) {
      packetsAccepted.add(1);
      messagesAccepted.add(p.n);
      return;
    }
    const retryable = res.status === 429 || res.status === 503;
    if (!retryable || attempt >= RETRIES) {
      packetsRejected.add(1, { status: String(res.status) });
      return;
    }
    retries.add(1, { status: String(res.status) });
    const ra = Number(res.headers['Retry-After']);
    sleep(Math.min(RETRY_MAX_WAIT, Number.isFinite(ra) && ra >= 0 ? ra : 0.1 * 2 ** attempt));
  }
}

export function handleSummary(data) {
  return summarize(data, 'ingest-packets.js', PLAN, ['packets_sent', 'packets_accepted', 'packets_rejected', 'messages_accepted', 'packet_retries']);
}

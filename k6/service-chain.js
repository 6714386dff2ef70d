// service-chain.js — traffic through the demo services (the platform seed):
// POST service-a /api/message-a, which calls service-b; a share of requests
// go to /api/error?statusCode=N instead.
//
//   TARGET_URL     service-a base URL (default http://localhost:10001)
//   ERROR_SHARE    share of requests sent to /api/error, 0..1 (0)
//   ERROR_STATUS   the status /api/error is asked for (500)
// plus the profile variables of lib/profile.js and thresholds of
// lib/thresholds.js.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { num, str, targetURL } from './lib/env.js';
import { plan, scenario } from './lib/profile.js';
import { statusCounts, thresholds } from './lib/thresholds.js';
import { summarize } from './lib/summary.js';

const PLAN = plan();
const BASE = targetURL('http://localhost:10001');
const ERROR_SHARE = Math.min(1, Math.max(0, num('ERROR_SHARE', 0)));
const ERROR_STATUS = Math.round(num('ERROR_STATUS', 500));

const chainRequests = new Counter('chain_requests');
const errorRequests = new Counter('error_requests');

export const options = {
  scenarios: { chain: scenario(PLAN, 'chain') },
  thresholds: statusCounts(thresholds(), 'http_reqs'),
  tags: { job_id: str('JOB_ID', ''), profile: PLAN.profile },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

let seq = 0;

export function chain() {
  if (Math.random() < ERROR_SHARE) {
    errorRequests.add(1);
    http.post(`${BASE}/api/error?statusCode=${ERROR_STATUS}`, null, {
      tags: { name: 'POST /api/error' },
      responseCallback: http.expectedStatuses(ERROR_STATUS),
    });
    return;
  }
  chainRequests.add(1);
  const res = http.post(`${BASE}/api/message-a`, JSON.stringify({ message: `hello ${++seq}` }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'POST /api/message-a' },
  });
  check(res, { 'message-a answered 2xx': (r) => r.status >= 200 && r.status < 300 });
}

export function handleSummary(data) {
  return summarize(data, 'service-chain.js', PLAN, ['chain_requests', 'error_requests']);
}

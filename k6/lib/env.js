// Environment helpers shared by the DSP Lab k6 scripts. Every setting comes
// from the environment (k6 run -e NAME=value, or the container's env), so the
// platform can map a request body straight onto a run.

export function str(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

export function num(name, def) {
  const v = str(name, undefined);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name}=${v}: not a number`);
  return n;
}

export function bool(name, def) {
  const v = str(name, undefined);
  if (v === undefined) return def;
  return ['1', 'true', 'yes', 'on'].includes(String(v).toLowerCase());
}

export function list(name, def) {
  return str(name, def).split(',').map((s) => s.trim()).filter((s) => s !== '');
}

// seconds parses "30", "30s", "2m", "1m30s", "1h" into seconds.
export function seconds(v) {
  if (typeof v === 'number') return v;
  const s = String(v).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let matched = '';
  let m;
  while ((m = re.exec(s)) !== null) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
    matched += m[0];
  }
  if (matched !== s) throw new Error(`duration ${v}: use seconds or a k6 duration like 1m30s`);
  return total;
}

// targetURL is TARGET_URL (the platform seed's targetUrl) without a
// trailing slash.
export function targetURL(def) {
  return str('TARGET_URL', def).replace(/\/+$/, '');
}

// weighted parses "info:70,warn:20,error:10" into a picker.
export function weighted(name, def) {
  const items = list(name, def).map((p) => {
    const [k, w] = p.split(':');
    const weight = w === undefined ? 1 : Number(w);
    if (!(weight >= 0)) throw new Error(`${name}: bad weight in ${p}`);
    return { k, w: weight };
  });
  const total = items.reduce((a, i) => a + i.w, 0);
  if (!(total > 0)) throw new Error(`${name}: weights sum to 0`);
  return (r) => {
    let x = r * total;
    for (const i of items) {
      if ((x -= i.w) < 0) return i.k;
    }
    return items[items.length - 1].k;
  };
}

// p402 live cost ledger: renders tiles and the denial feed from /dashboard/api/snapshot,
// then keeps them current from the Server-Sent Events at /dashboard/stream.
//
// Every value shown comes from the ledger and may hold user-controlled text (model
// names, reasons, attribution ids), so the DOM is built with createElement and
// textContent only: nothing received is ever parsed as HTML.
'use strict';

(function () {
  const MAX_FEED_ROWS = 100; // the feed is bounded: older rows fall off the bottom
  const params = new URLSearchParams(window.location.search);
  const token = params.get('token');
  const base = window.location.pathname.replace(/\/+$/, '');
  const tileNodes = new Map(); // department id ('' for none) -> tile element
  const shownDenials = new Set(); // event ids already in the feed (snapshot and stream overlap)
  const stats = { events: 0, lastSeq: 0 };

  function url(path) {
    return token ? `${base}${path}?token=${encodeURIComponent(token)}` : base + path;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function byId(id) { return document.getElementById(id); }

  // Money arrives as exact decimal strings; format them as strings (no float, nothing rounded).
  function money(value) {
    if (value === null || value === undefined || value === '') return '—';
    let text = String(value);
    const negative = text.startsWith('-');
    if (negative) text = text.slice(1);
    const parts = text.split('.');
    const whole = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    let frac = (parts[1] || '').replace(/0+$/, '');
    if (frac.length < 2) frac = frac.padEnd(2, '0');
    return `${negative ? '-' : ''}$${whole}.${frac}`;
  }

  function count(n) { return Number(n || 0).toLocaleString('en-US'); }

  function when(iso) {
    if (!iso) return '—';
    return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');
  }

  function clock(iso) {
    const match = /T(\d\d:\d\d:\d\d)/.exec(iso || '');
    return match ? match[1] : '—';
  }

  function level(percent) {
    if (percent === null || percent === undefined) return 'none';
    if (percent >= 90) return 'crit';
    if (percent >= 75) return 'warn';
    return 'ok';
  }

  // spend_report rounds percent to 2 places; a real but tiny spend must not read as "0%".
  function percentText(percent, used) {
    if (percent === null || percent === undefined) return '';
    if (Number(percent) === 0 && /[1-9]/.test(used || '')) return '<0.01%';
    return `${percent}%`;
  }

  function setBar(fill, percent) {
    fill.style.width = `${Math.min(Math.max(Number(percent) || 0, 0), 100)}%`;
    fill.dataset.level = level(percent);
  }

  function row(label, value, cls) {
    const line = el('div', 'row');
    line.append(el('span', 'k', label), el('span', `v ${cls || ''}`.trim(), value));
    return line;
  }

  function buildTile(id) {
    const tile = el('article', 'tile');
    tile.dataset.department = id;
    const head = el('header', 'tile-head');
    head.append(el('h3', 'name', id || '(no department)'), el('span', 'pct'));
    const bar = el('div', 'bar');
    bar.append(el('div', 'fill'));
    const body = el('div', 'rows');
    tile.append(head, el('div', 'headline'), bar, body);
    return tile;
  }

  function fillTile(tile, d) {
    const hasCap = d.cap_usd !== undefined && d.cap_usd !== null;
    const headline = tile.querySelector('.headline');
    headline.replaceChildren(el('span', 'settled', money(d.settled_usd)),
      el('span', 'of', hasCap ? ` of ${money(d.cap_usd)}` : ' settled · no monthly cap'));
    tile.querySelector('.pct').textContent = hasCap ? percentText(d.percent, `${d.settled_usd}${d.reserved_usd}`) : '';
    tile.querySelector('.pct').dataset.level = level(hasCap ? d.percent : null);
    tile.querySelector('.bar').hidden = !hasCap;
    if (hasCap) setBar(tile.querySelector('.fill'), d.percent);
    const rows = [
      row('Settled', money(d.settled_usd), 'settled-usd'),
      row('Reserved', money(d.reserved_usd), 'reserved-usd'),
    ];
    if (hasCap) {
      rows.push(row('Cap', money(d.cap_usd), 'cap-usd'), row('Remaining', money(d.remaining_usd), 'remaining-usd'));
    }
    rows.push(row('Burn rate', `${money(d.burn_usd_per_hour)}/h`, 'burn'));
    if (hasCap) {
      rows.push(row('Projected exhaustion',
        d.projected_exhaustion ? when(d.projected_exhaustion) : 'not this month', 'exhaustion'));
    }
    rows.push(row('Requests · denied', `${count(d.requests)} · ${count(d.denied)}`, 'counts'));
    tile.querySelector('.rows').replaceChildren(...rows);
    tile.dataset.level = level(hasCap ? d.percent : null);
  }

  function renderTiles(snap) {
    const container = byId('tiles');
    const wanted = [];
    for (const d of snap.departments || []) {
      const id = d.department === null || d.department === undefined ? '' : String(d.department);
      let tile = tileNodes.get(id);
      if (!tile) {
        tile = buildTile(id);
        tileNodes.set(id, tile);
      }
      fillTile(tile, d);
      wanted.push(tile);
    }
    container.replaceChildren(...(wanted.length ? wanted : [el('p', 'empty', 'No departments yet.')]));
    renderTotals(snap);
  }

  function renderTotals(snap) {
    const t = snap.totals || {};
    byId('t-settled').textContent = money(t.settled_usd);
    byId('t-reserved').textContent = money(t.reserved_usd);
    byId('t-burn').textContent = `${money(t.burn_usd_per_hour)}/h`;
    byId('t-requests').textContent = count(t.requests);
    byId('t-denied').textContent = count(t.denied);
    const b = t.tenant_budget;
    const box = byId('t-budget-box');
    if (b) {
      byId('t-budget').textContent = `${percentText(b.percent, b.used_usd) || '—'} of ${money(b.cap_usd)} · ${money(b.remaining_usd)} left`;
      setBar(byId('t-budget-fill'), b.percent);
      box.dataset.level = level(b.percent);
    } else {
      byId('t-budget').textContent = 'no monthly cap';
      setBar(byId('t-budget-fill'), 0);
    }
    if (snap.tenant) byId('tenant').textContent = snap.tenant;
    if (snap.window && snap.window.start) {
      byId('window').textContent = `month from ${snap.window.start.slice(0, 10)}`;
    }
    byId('updated').textContent = `updated ${when(snap.generated_at)}`;
  }

  function who(e) {
    const cell = el('td', 'who');
    cell.append(el('div', 'primary', e.employee || e.workflow || e.key || '—'));
    const tags = [];
    if (e.department) tags.push(`dept ${e.department}`);
    if (e.workflow && e.employee) tags.push(`workflow ${e.workflow}`);
    if (e.project) tags.push(`project ${e.project}`);
    if (e.customer) tags.push(`customer ${e.customer}`);
    if (e.feature) tags.push(`feature ${e.feature}`);
    if (tags.length) cell.append(el('div', 'tags', tags.join(' · ')));
    return cell;
  }

  function recovery(e) {
    const cell = el('td', 'recovery');
    const r = e.recovery || {};
    cell.append(el('span', 'action', r.action || '—'));
    let extra = '';
    if (r.max_tokens !== undefined) extra = `max_tokens ≤ ${r.max_tokens}`;
    else if (r.header) extra = r.header;
    else if (r.allowed_models) extra = r.allowed_models.join(', ');
    if (extra) cell.append(el('div', 'extra', extra));
    if (r.detail) cell.title = r.detail;
    return cell;
  }

  function denialRow(e, fresh) {
    const tr = el('tr', fresh ? 'fresh' : '');
    tr.dataset.eventId = e.event_id || '';
    tr.dataset.denyCode = e.deny_code || '';
    const time = el('td', 'time', clock(e.ts));
    time.title = e.ts || '';
    const code = el('td', 'code');
    code.append(el('span', `badge ${(e.deny_code || '').toLowerCase()}`, e.deny_code));
    tr.append(time, who(e), el('td', 'model', e.model || '—'), code, el('td', 'reason', e.reason || ''), recovery(e));
    return tr;
  }

  function addDenial(e, fresh) {
    if (!e.event_id || shownDenials.has(e.event_id)) return;
    shownDenials.add(e.event_id);
    const body = byId('feed');
    body.prepend(denialRow(e, fresh));
    while (body.children.length > MAX_FEED_ROWS) {
      shownDenials.delete(body.lastElementChild.dataset.eventId);
      body.lastElementChild.remove();
    }
    byId('feed-empty').hidden = body.children.length > 0;
  }

  function setSeq(seq) {
    if (seq > stats.lastSeq) stats.lastSeq = seq;
    byId('last-seq').textContent = `ledger row ${count(stats.lastSeq)} · ${count(stats.events)} live events`;
  }

  function setConn(state, text) {
    const box = byId('conn');
    box.dataset.state = state;
    byId('conn-text').textContent = text;
  }

  function banner(text) {
    const node = byId('banner');
    node.hidden = !text;
    node.textContent = text || '';
  }

  function onLedger(msg) {
    const e = JSON.parse(msg.data);
    stats.events += 1;
    setSeq(e.seq || 0);
    if (e.kind === 'decision' && e.outcome === 'deny') addDenial(e, true);
  }

  function connect() {
    const source = new EventSource(url('/stream'));
    source.addEventListener('open', () => setConn('live', 'Live'));
    source.addEventListener('error', () => setConn('down', 'Reconnecting…'));
    source.addEventListener('ledger', onLedger);
    source.addEventListener('tiles', (msg) => renderTiles(JSON.parse(msg.data)));
    source.addEventListener('dropped', (msg) => {
      const n = JSON.parse(msg.data).count;
      banner(`This browser fell behind and skipped ${n} ledger events; the tiles are current.`);
    });
    source.addEventListener('status', (msg) => {
      const s = JSON.parse(msg.data);
      banner(s.store === 'ok' ? '' : 'The store cannot be reached: the gateway refuses requests (fail closed) until it returns.');
    });
  }

  async function start() {
    try {
      const response = await fetch(url('/api/snapshot'), { cache: 'no-store', credentials: 'same-origin' });
      if (!response.ok) {
        banner(response.status === 401 ? 'The admin token is missing or wrong: open /dashboard?token=<admin token>.'
          : `The snapshot failed (HTTP ${response.status}).`);
        if (response.status === 401) return;
      } else {
        const snap = await response.json();
        renderTiles(snap);
        const denials = (snap.denials || []).slice().reverse(); // oldest first, so the newest ends on top
        for (const d of denials) addDenial(d, false);
        byId('feed-empty').hidden = byId('feed').children.length > 0;
        setSeq(snap.last_seq || 0);
      }
    } catch (err) {
      banner('The snapshot could not be loaded; waiting for the live stream.');
    }
    connect();
  }

  document.addEventListener('DOMContentLoaded', start);
}());

// The SVG seat map of the event page: built once from `GET /events/{id}/seats`
// (one <rect> per seat, `data-seat="A-12"`, `data-state="F|H|S|B"`), then kept
// live by touching only the seats that changed. One listener per kind of event
// on the <svg> (event delegation), never one per seat, so a 20,000-seat map
// builds and updates fast.
//
// Keyboard: the map is one tab stop (roving tabindex: exactly one seat has
// tabindex=0); arrow keys move between seats and rows, Home/End go to the ends
// of a row, PageUp/PageDown jump five rows, Enter or Space selects a free seat,
// + and - zoom. Zoom and pan change the viewBox only (buttons, Ctrl+wheel,
// pinch, drag).
//
// Read-only (`interactive: false`, the organizer's dashboard): the same picture
// and the same data-seat / data-state attributes, but the seats are not
// controls (no role, aria-pressed or tabindex; clicks and keys select nothing);
// the <svg> is one role="img" whose aria-label sums the seats up ("Seat map:
// 1,200 free, 30 held, 400 sold"), kept current. Zoom and pan still work.

import { money } from './api.js';

const NS = 'http://www.w3.org/2000/svg';
const CELL = 10; // seat pitch in map units
const SEAT = 8; // seat size
const LABEL_W = 26; // room for the row label left of each row
const TITLE_H = 20; // section name above each section
const GAP = 28; // between sections
const PAD = 12;
const STAGE_H = 26;
const GA_W = 220;
const GA_H = 110;
const TIER_COLOURS = 8;

export const STATE_WORDS = { F: 'free', H: 'held', S: 'sold', B: 'not on sale' };

/**
 * Creates the map inside `container`.
 * options: {
 *   title, currency,
 *   interactive (default true; false = read-only, see above),
 *   tiers: [{code, price}],
 *   tierOf(sectionName, rowLabel) → tier code,
 *   limit() → how many seats may be selected at most,
 *   onSelectionChange(labels), onGeneral(sectionName), onRefused(message), onCounts(sections)
 * }
 */
export function createSeatMap(container, options) {
  options.tiers = options.tiers || [];
  const interactive = options.interactive !== false;
  const tierIndex = new Map(options.tiers.map((t, i) => [t.code, i]));
  const currency = options.currency;
  // Formatting money builds Intl formatters: once per tier, not once per seat.
  const tierMoney = options.tiers.map((t) => money(t.price, currency));

  // Seats, by index.
  let labels = [];
  let rowOf = new Int32Array(0);
  let numOf = new Int32Array(0);
  let state = new Uint8Array(0);
  let tierOf = new Uint8Array(0);
  let xs = new Float32Array(0);
  let ys = new Float32Array(0);
  let rects = [];
  let index = new Map();
  // Rows (in map order) and sections.
  let rows = [];
  let sections = [];
  let shape = '';

  const selected = new Set();
  const mine = new Set();
  let active = -1;

  let svgEl = null;
  let full = { x: 0, y: 0, w: 100, h: 100 };
  let view = { ...full };

  const F = 'F'.charCodeAt(0);

  function tierCode(i) {
    return options.tiers[tierOf[i]]?.code ?? '';
  }
  function priceOfIndex(i) {
    return options.tiers[tierOf[i]]?.price ?? 0;
  }

  function describe(i) {
    const row = rows[rowOf[i]];
    const letter = String.fromCharCode(state[i]);
    const word = mine.has(i) ? 'held for you' : STATE_WORDS[letter] || letter;
    return `Row ${row.label} seat ${numOf[i]}, tier ${tierCode(i)}, ${tierMoney[tierOf[i]] ?? ''}, ${word}`;
  }

  function shapeOf(body) {
    return body.sections
      .map((s) => `${s.name}:${s.general_admission ? `ga${s.capacity}` : s.rows.map((r) => `${r.label}/${r.first}/${r.seats.length}`).join(',')}`)
      .join('|');
  }

  /** Places sections in lines under the stage; returns the map's size. */
  function layout(body) {
    const boxes = body.sections.map((s) => {
      if (s.general_admission) return { w: GA_W, h: GA_H + TITLE_H };
      const longest = Math.max(1, ...s.rows.map((r) => r.seats.length));
      return { w: LABEL_W + longest * CELL, h: TITLE_H + s.rows.length * CELL };
    });
    const area = boxes.reduce((sum, b) => sum + (b.w + GAP) * (b.h + GAP), 0);
    const widest = Math.max(...boxes.map((b) => b.w));
    const lineMax = Math.max(widest, Math.sqrt(area) * 1.6);
    const lines = [];
    let line = { items: [], w: 0, h: 0 };
    boxes.forEach((b, i) => {
      const w = line.items.length ? line.w + GAP + b.w : b.w;
      if (line.items.length && w > lineMax) {
        lines.push(line);
        line = { items: [], w: 0, h: 0 };
      }
      line.w = line.items.length ? line.w + GAP + b.w : b.w;
      line.h = Math.max(line.h, b.h);
      line.items.push(i);
    });
    lines.push(line);
    const width = Math.max(...lines.map((l) => l.w));
    let y = STAGE_H + GAP;
    for (const l of lines) {
      let x = (width - l.w) / 2;
      for (const i of l.items) {
        boxes[i].x = x;
        boxes[i].y = y;
        x += boxes[i].w + GAP;
      }
      y += l.h + GAP;
    }
    return { boxes, width, height: y - GAP };
  }

  function node(tag, attrs) {
    const n = document.createElementNS(NS, tag);
    for (const k in attrs) n.setAttribute(k, attrs[k]);
    return n;
  }

  function build(body) {
    const t0 = performance.now();
    const { boxes, width, height } = layout(body);
    let total = 0;
    for (const s of body.sections) for (const r of s.rows) total += r.seats.length;
    labels = new Array(total);
    rowOf = new Int32Array(total);
    numOf = new Int32Array(total);
    state = new Uint8Array(total);
    tierOf = new Uint8Array(total);
    xs = new Float32Array(total);
    ys = new Float32Array(total);
    rects = new Array(total);
    index = new Map();
    rows = [];
    sections = [];
    selected.clear();
    active = -1;

    full = { x: -PAD, y: -PAD, w: width + 2 * PAD, h: height + 2 * PAD };
    view = { ...full };
    const root = node('svg', {
      viewBox: `${full.x} ${full.y} ${full.w} ${full.h}`,
      class: interactive ? 'seatmap-svg' : 'seatmap-svg read-only',
      role: interactive ? 'group' : 'img',
      'aria-label': mapName(),
      'aria-describedby': 'map-help',
      preserveAspectRatio: 'xMidYMid meet',
    });
    const stage = node('g', { class: 'stage', 'aria-hidden': 'true' });
    stage.append(node('rect', { x: width * 0.2, y: 0, width: width * 0.6, height: STAGE_H, rx: 4 }));
    const stageText = node('text', { x: width / 2, y: STAGE_H / 2 + 4, 'text-anchor': 'middle' });
    stageText.textContent = 'Stage';
    stage.append(stageText);
    root.append(stage);

    // One template per tier: cloning is cheaper than setting shared attributes.
    const control = interactive ? { role: 'button', 'aria-pressed': 'false' } : {};
    const templates = options.tiers.map((_, ti) => node('rect', { class: `seat t${ti % TIER_COLOURS}`, width: SEAT, height: SEAT, ...control }));
    if (!templates.length) templates.push(node('rect', { class: 'seat t0', width: SEAT, height: SEAT, ...control }));

    let i = 0;
    body.sections.forEach((s, si) => {
      const box = boxes[si];
      const group = node('g', interactive
        ? { class: s.general_admission ? 'section ga' : 'section', role: 'group', 'aria-label': s.name }
        : { class: s.general_admission ? 'section ga' : 'section', 'data-section': s.name });
      const title = node('text', { class: 'section-name', x: box.x + (s.general_admission ? box.w / 2 : LABEL_W), y: box.y + 13, 'aria-hidden': 'true' });
      if (s.general_admission) title.setAttribute('text-anchor', 'middle');
      title.textContent = s.name;
      group.append(title);
      const section = { name: s.name, ga: s.general_admission, counts: countsOf(s), box, tier: (options.tierOf ? options.tierOf(s.name, null) : options.tiers[0]?.code), el: null, text: null };
      sections.push(section);
      if (s.general_admission) {
        const tier = tierIndex.get(section.tier) ?? 0;
        const block = node('g', interactive ? { class: 'ga-block', role: 'button', tabindex: '0', 'data-section': s.name } : { class: 'ga-block', 'data-section': s.name });
        block.append(node('rect', { class: `ga-area t${tier % TIER_COLOURS}`, x: box.x, y: box.y + TITLE_H, width: box.w, height: GA_H, rx: 6 }));
        const line1 = node('text', { x: box.x + box.w / 2, y: box.y + TITLE_H + GA_H / 2 - 4, 'text-anchor': 'middle', class: 'ga-text' });
        line1.textContent = 'General admission';
        const line2 = node('text', { x: box.x + box.w / 2, y: box.y + TITLE_H + GA_H / 2 + 14, 'text-anchor': 'middle', class: 'ga-count' });
        block.append(line1, line2);
        section.el = block;
        section.text = line2;
        group.append(block);
        paintGeneral(section);
      } else {
        let rowInSection = 0;
        for (const r of s.rows) {
          const ri = rows.length;
          const code = options.tierOf ? options.tierOf(s.name, r.label) : options.tiers[0]?.code;
          const ti = tierIndex.get(code) ?? 0;
          const y = box.y + TITLE_H + rowInSection++ * CELL;
          const x0 = box.x + LABEL_W;
          rows.push({ label: r.label, first: r.first, section: si, start: i, count: r.seats.length, x0, y });
          const rowLabel = node('text', { class: 'row-label', x: box.x + LABEL_W - 4, y: y + SEAT - 1, 'text-anchor': 'end', 'aria-hidden': 'true' });
          rowLabel.textContent = r.label;
          group.append(rowLabel);
          const tpl = templates[ti] || templates[0];
          const seats = r.seats;
          for (let k = 0; k < seats.length; k++, i++) {
            const label = `${r.label}-${r.first + k}`;
            const x = x0 + k * CELL;
            labels[i] = label;
            rowOf[i] = ri;
            numOf[i] = r.first + k;
            state[i] = seats.charCodeAt(k);
            tierOf[i] = ti;
            xs[i] = x;
            ys[i] = y;
            index.set(label, i);
            const rect = tpl.cloneNode(false);
            rect.setAttribute('x', x);
            rect.setAttribute('y', y);
            rect.setAttribute('data-seat', label);
            rect.setAttribute('data-state', seats[k]);
            if (interactive && seats.charCodeAt(k) !== F) rect.setAttribute('aria-disabled', 'true');
            rects[i] = rect;
            group.append(rect);
          }
        }
      }
      root.append(group);
    });
    if (interactive) {
      // Labels last: they need the row and state arrays complete.
      for (let k = 0; k < total; k++) rects[k].setAttribute('aria-label', describe(k));
      // Roving tabindex starts on the first free seat.
      let first = 0;
      while (first < total && state[first] !== F) first++;
      setActive(first < total ? first : 0, false);
    }

    attach(root);
    container.replaceChildren(root);
    svgEl = root;
    shape = shapeOf(body);
    summarise();
    options.onCounts?.(sections);
    return performance.now() - t0;
  }

  /** The map's accessible name: its title, and in read-only mode the seat counts. */
  function mapName() {
    const name = `Seat map${options.title ? ` of ${options.title}` : ''}`;
    if (interactive || !sections.length) return name;
    const total = { available: 0, held: 0, sold: 0, blocked: 0 };
    for (const s of sections) for (const k in total) total[k] += Number(s.counts[k]) || 0;
    const parts = [`${total.available.toLocaleString()} free`, `${total.held.toLocaleString()} held`, `${total.sold.toLocaleString()} sold`];
    if (total.blocked) parts.push(`${total.blocked.toLocaleString()} not on sale`);
    return `${name}: ${parts.join(', ')}`;
  }

  function summarise() {
    if (!interactive && svgEl) svgEl.setAttribute('aria-label', mapName());
  }

  function countsOf(s) {
    return { capacity: s.capacity, available: s.available, held: s.held, sold: s.sold, blocked: s.blocked };
  }

  function paintGeneral(section) {
    const c = section.counts;
    section.el.classList.toggle('sold-out', c.available <= 0);
    const price = options.tiers[tierIndex.get(section.tier) ?? 0]?.price;
    section.text.textContent = c.available > 0 ? `${c.available.toLocaleString()} of ${c.capacity.toLocaleString()} left` : 'Sold out';
    if (!interactive) return;
    section.el.setAttribute(
      'aria-label',
      `${section.name}, general admission, tier ${section.tier}${price !== undefined ? `, ${money(price, currency)}` : ''}, ` +
        `${c.available.toLocaleString()} of ${c.capacity.toLocaleString()} places left. Choose a quantity.`,
    );
  }

  function setActive(i, focus = true) {
    if (!interactive || i < 0 || i >= rects.length) return;
    if (active >= 0 && active !== i && rects[active]) rects[active].setAttribute('tabindex', '-1');
    active = i;
    rects[i].setAttribute('tabindex', '0');
    if (focus) {
      ensureVisible(i);
      rects[i].focus({ preventScroll: true });
    }
  }

  function paint(i) {
    const rect = rects[i];
    const letter = String.fromCharCode(state[i]);
    rect.setAttribute('data-state', letter);
    rect.classList.toggle('mine', mine.has(i));
    if (!interactive) return;
    if (letter === 'F') rect.removeAttribute('aria-disabled');
    else rect.setAttribute('aria-disabled', 'true');
    rect.setAttribute('aria-label', describe(i));
  }

  /** Applies one seat's new letter; a selected seat taken by someone else is unselected. */
  function setState(i, letter) {
    const code = letter.charCodeAt(0);
    if (state[i] === code) return false;
    state[i] = code;
    let dropped = false;
    if (code !== F && selected.has(i)) {
      selected.delete(i);
      rects[i].classList.remove('selected');
      rects[i].setAttribute('aria-pressed', 'false');
      dropped = true;
    }
    paint(i);
    return dropped;
  }

  function toggle(i) {
    if (!interactive || i < 0 || i >= rects.length) return;
    if (selected.has(i)) {
      selected.delete(i);
    } else {
      if (state[i] !== F || mine.has(i)) {
        options.onRefused?.(`Row ${rows[rowOf[i]].label} seat ${numOf[i]} is ${mine.has(i) ? 'already held for you' : STATE_WORDS[String.fromCharCode(state[i])]}: pick a free seat.`);
        return;
      }
      const limit = options.limit ? options.limit() : 50;
      if (selected.size >= limit) {
        options.onRefused?.(`You can pick at most ${limit} seat${limit === 1 ? '' : 's'} for this event.`);
        return;
      }
      selected.add(i);
    }
    const on = selected.has(i);
    rects[i].classList.toggle('selected', on);
    rects[i].setAttribute('aria-pressed', on ? 'true' : 'false');
    options.onSelectionChange?.(selectedLabels());
  }

  function selectedLabels() {
    return [...selected].sort((a, b) => a - b).map((i) => labels[i]);
  }

  // ---- navigation -------------------------------------------------------

  function nearestInRow(ri, x) {
    const r = rows[ri];
    const k = Math.min(r.count - 1, Math.max(0, Math.round((x - r.x0) / CELL)));
    return r.start + k;
  }

  function move(key, ctrl) {
    if (active < 0) return null;
    const ri = rowOf[active];
    const r = rows[ri];
    switch (key) {
      case 'ArrowRight':
        return active + 1 < r.start + r.count ? active + 1 : active;
      case 'ArrowLeft':
        return active > r.start ? active - 1 : active;
      case 'ArrowDown':
        return ri + 1 < rows.length ? nearestInRow(ri + 1, xs[active]) : active;
      case 'ArrowUp':
        return ri > 0 ? nearestInRow(ri - 1, xs[active]) : active;
      case 'PageDown':
        return nearestInRow(Math.min(rows.length - 1, ri + 5), xs[active]);
      case 'PageUp':
        return nearestInRow(Math.max(0, ri - 5), xs[active]);
      case 'Home':
        return ctrl ? 0 : r.start;
      case 'End':
        return ctrl ? rects.length - 1 : r.start + r.count - 1;
      default:
        return null;
    }
  }

  // ---- view box: zoom and pan ----------------------------------------------

  function applyView() {
    if (!svgEl) return;
    svgEl.setAttribute('viewBox', `${view.x} ${view.y} ${view.w} ${view.h}`);
    const zoomed = view.w < full.w - 0.5;
    container.classList.toggle('zoomed', zoomed);
    options.onZoom?.(full.w / view.w);
  }

  function clampView() {
    const minW = Math.min(full.w, 16 * CELL);
    if (view.w < minW) {
      const k = minW / view.w;
      view.w *= k;
      view.h *= k;
    }
    if (view.w > full.w) {
      view.w = full.w;
      view.h = full.h;
    }
    view.x = Math.min(Math.max(view.x, full.x), full.x + full.w - view.w);
    view.y = Math.min(Math.max(view.y, full.y), full.y + full.h - view.h);
  }

  /** Zooms by `factor` (>1 = closer) around map point (cx, cy), the centre by default. */
  function zoom(factor, cx, cy) {
    const x = cx ?? view.x + view.w / 2;
    const y = cy ?? view.y + view.h / 2;
    const w = view.w / factor;
    const h = view.h / factor;
    view = { x: x - ((x - view.x) / view.w) * w, y: y - ((y - view.y) / view.h) * h, w, h };
    clampView();
    applyView();
  }

  function resetView() {
    view = { ...full };
    applyView();
  }

  function ensureVisible(i) {
    const x = xs[i];
    const y = ys[i];
    const m = CELL;
    if (x >= view.x + m && x + SEAT <= view.x + view.w - m && y >= view.y + m && y + SEAT <= view.y + view.h - m) return;
    view.x = x + SEAT / 2 - view.w / 2;
    view.y = y + SEAT / 2 - view.h / 2;
    clampView();
    applyView();
  }

  /** Screen pixels → map units. */
  function toMap(clientX, clientY) {
    const ctm = svgEl.getScreenCTM();
    if (!ctm) return { x: view.x + view.w / 2, y: view.y + view.h / 2 };
    const p = new DOMPoint(clientX, clientY).matrixTransform(ctm.inverse());
    return { x: p.x, y: p.y };
  }

  function unitsPerPixel() {
    const ctm = svgEl.getScreenCTM();
    return ctm && ctm.a ? 1 / ctm.a : view.w / Math.max(1, svgEl.clientWidth);
  }

  // ---- events (delegated: a handful of listeners for the whole map) --------

  function seatIndexOf(target) {
    const rect = target && target.closest ? target.closest('rect.seat') : null;
    if (!rect) return -1;
    const i = index.get(rect.getAttribute('data-seat'));
    return i === undefined ? -1 : i;
  }

  // A seat that gets the focus (by click or script) becomes the map's one Tab stop.
  // Listened for on the container, once: Chromium makes an <svg> with a focus
  // listener a Tab stop of its own.
  if (interactive) {
    container.addEventListener('focusin', (event) => {
      const i = seatIndexOf(event.target);
      if (i >= 0 && i !== active) setActive(i, false);
    });
  }

  function attach(root) {
    const pointers = new Map();
    let drag = null;
    let pinch = null;
    let suppressClick = false;

    root.addEventListener('click', (event) => {
      if (suppressClick) {
        suppressClick = false;
        return;
      }
      if (!interactive) return;
      const ga = event.target.closest && event.target.closest('.ga-block');
      if (ga) {
        options.onGeneral?.(ga.getAttribute('data-section'));
        return;
      }
      const i = seatIndexOf(event.target);
      if (i < 0) return;
      setActive(i, false);
      rects[i].focus({ preventScroll: true });
      toggle(i);
    });

    root.addEventListener('keydown', (event) => {
      const ga = interactive && event.target.closest && event.target.closest('.ga-block');
      if (ga && (event.key === 'Enter' || event.key === ' ')) {
        event.preventDefault();
        options.onGeneral?.(ga.getAttribute('data-section'));
        return;
      }
      if (event.key === '+' || event.key === '=') {
        event.preventDefault();
        zoom(1.5);
        if (active >= 0) ensureVisible(active);
        return;
      }
      if (event.key === '-' || event.key === '_') {
        event.preventDefault();
        zoom(1 / 1.5);
        return;
      }
      if (event.key === '0') {
        event.preventDefault();
        resetView();
        return;
      }
      const i = interactive ? seatIndexOf(event.target) : -1;
      if (i < 0) return;
      if (event.key === 'Enter' || event.key === ' ' || event.key === 'Spacebar') {
        event.preventDefault();
        toggle(i);
        return;
      }
      const next = move(event.key, event.ctrlKey || event.metaKey);
      if (next === null) return;
      event.preventDefault();
      setActive(next, true);
    });

    root.addEventListener(
      'wheel',
      (event) => {
        if (!event.ctrlKey && !event.metaKey) return;
        event.preventDefault();
        const p = toMap(event.clientX, event.clientY);
        zoom(Math.exp(-event.deltaY * 0.002), p.x, p.y);
      },
      { passive: false },
    );

    root.addEventListener('pointerdown', (event) => {
      if (event.pointerType === 'mouse' && event.button !== 0) return;
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      if (pointers.size === 1) {
        drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false, id: event.pointerId };
      } else if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        pinch = { d: Math.hypot(a.x - b.x, a.y - b.y), w: view.w };
        drag = null;
      }
    });
    root.addEventListener('pointermove', (event) => {
      if (!pointers.has(event.pointerId)) return;
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      if (pinch && pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        const d = Math.hypot(a.x - b.x, a.y - b.y);
        if (d > 0 && pinch.d > 0) {
          const mid = toMap((a.x + b.x) / 2, (a.y + b.y) / 2);
          const target = pinch.w / (d / pinch.d);
          zoom(view.w / target, mid.x, mid.y);
        }
        suppressClick = true;
        return;
      }
      if (!drag || drag.id !== event.pointerId) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 5) return;
      if (!container.classList.contains('zoomed')) return;
      if (!drag.moved) {
        drag.moved = true;
        try {
          root.setPointerCapture(event.pointerId);
        } catch {
          /* the pointer may be gone already */
        }
        container.classList.add('panning');
      }
      const k = unitsPerPixel();
      view.x = drag.vx - dx * k;
      view.y = drag.vy - dy * k;
      clampView();
      applyView();
    });
    const end = (event) => {
      pointers.delete(event.pointerId);
      if (pointers.size < 2) pinch = null;
      if (drag && drag.id === event.pointerId) {
        if (drag.moved) suppressClick = true;
        drag = null;
        container.classList.remove('panning');
      }
    };
    root.addEventListener('pointerup', end);
    root.addEventListener('pointercancel', end);
  }

  // ---- public -----------------------------------------------------------

  return {
    /** A full state (the body of GET /events/{id}/seats or a `snapshot` frame). Returns build ms or null. */
    snapshot(body) {
      const keep = selectedLabels();
      if (!svgEl || shapeOf(body) !== shape) {
        const keepMine = [...mine].map((i) => labels[i]).filter(Boolean);
        mine.clear();
        const ms = build(body);
        for (const label of keep) {
          const i = index.get(label);
          if (i !== undefined && state[i] === F) {
            selected.add(i);
            rects[i].classList.add('selected');
            rects[i].setAttribute('aria-pressed', 'true');
          }
        }
        if (keepMine.length) this.setMine(keepMine);
        if (keep.length) options.onSelectionChange?.(selectedLabels());
        return ms;
      }
      const dropped = [];
      let i = 0;
      for (const s of body.sections) {
        for (const r of s.rows) {
          const seats = r.seats;
          for (let k = 0; k < seats.length; k++, i++) {
            if (state[i] !== seats.charCodeAt(k) && setState(i, seats[k])) dropped.push(labels[i]);
          }
        }
      }
      this.counts(body.sections);
      if (dropped.length) options.onSelectionChange?.(selectedLabels(), dropped);
      return null;
    },

    /** A `changes` frame: `{seats: {label: letter}, sections: [counts]}`. */
    changes(body) {
      const dropped = [];
      for (const label in body.seats || {}) {
        const i = index.get(label);
        if (i !== undefined && setState(i, body.seats[label])) dropped.push(label);
      }
      if (body.sections && body.sections.length) this.counts(body.sections);
      if (dropped.length) options.onSelectionChange?.(selectedLabels(), dropped);
    },

    /** Section counts (SectionCountsOut[]). */
    counts(list) {
      for (const c of list) {
        const section = sections.find((s) => s.name === c.name);
        if (!section) continue;
        section.counts = countsOf(c);
        if (section.ga) paintGeneral(section);
      }
      summarise();
      options.onCounts?.(sections);
    },

    sections: () => sections,
    selected: selectedLabels,
    has: (label) => index.has(label),
    isFree: (label) => {
      const i = index.get(label);
      return i !== undefined && state[i] === F && !mine.has(i);
    },
    priceOf(label) {
      const i = index.get(label);
      return i === undefined ? 0 : priceOfIndex(i);
    },
    tierOfSeat(label) {
      const i = index.get(label);
      return i === undefined ? '' : tierCode(i);
    },
    sectionOfSeat(label) {
      const i = index.get(label);
      return i === undefined ? '' : sections[rows[rowOf[i]].section].name;
    },
    interactive,
    select(list) {
      if (!interactive) return;
      for (const label of list) {
        const i = index.get(label);
        if (i !== undefined && !selected.has(i) && state[i] === F && !mine.has(i)) toggle(i);
      }
    },
    unselect(label) {
      const i = index.get(label);
      if (i !== undefined && selected.has(i)) toggle(i);
    },
    clearSelection() {
      for (const i of selected) {
        rects[i].classList.remove('selected');
        rects[i].setAttribute('aria-pressed', 'false');
      }
      selected.clear();
      options.onSelectionChange?.([]);
    },
    /** Marks seats as held by this buyer (`add`) or replaces the set. */
    setMine(list, add = false) {
      const before = [...mine];
      if (!add) mine.clear();
      for (const label of list) {
        const i = index.get(label);
        if (i === undefined) continue;
        mine.add(i);
        if (selected.has(i)) {
          selected.delete(i);
          rects[i].classList.remove('selected');
          rects[i].setAttribute('aria-pressed', 'false');
        }
      }
      for (const i of before) if (!mine.has(i)) paint(i);
      for (const i of mine) paint(i);
    },
    focus() {
      if (active >= 0) setActive(active, true);
    },
    focusSeat(label) {
      const i = index.get(label);
      if (i !== undefined) setActive(i, true);
    },
    zoomIn: () => zoom(1.5),
    zoomOut: () => zoom(1 / 1.5),
    resetZoom: resetView,
    size: () => rects.length,
  };
}

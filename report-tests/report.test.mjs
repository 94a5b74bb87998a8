// The HTML report in a real browser: headless Chromium (Debian's package) driven by
// playwright-core. Run by report-tests/run.sh, which builds the reports first:
//   REPORT_ALL   a report of four runs: sim:v2 (+ a fuzz summary line), sim:v2 with two defects,
//                sim:v2 with flags stop_copy,p2p, and the real mtty run
//   REPORT_MTTY  a report of the mtty run alone
//   REPORT_KCOV  a report of a guided and a blind kernel-coverage fuzz session on mtty
//   REPORT_ODD   a report of five runs that are not whole or plain: sim:v2 (+ fuzz summary), a
//                partial run (a filter), the defect run killed before its end line, the sim:v2
//                run marked interrupted, a fuzz session whose finding breaks V2-STATE-007
//   ARTIFACTS    where the screenshots go
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ALL = path.resolve(process.env.REPORT_ALL ?? '');
const MTTY = path.resolve(process.env.REPORT_MTTY ?? '');
const KCOV = path.resolve(process.env.REPORT_KCOV ?? '');
const ODD = path.resolve(process.env.REPORT_ODD ?? '');
const ARTIFACTS = path.resolve(process.env.ARTIFACTS ?? '.');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let context;
let profile;
const problems = []; // page errors, console errors, network requests: must stay empty

before(async () => {
  for (const dir of [ALL, MTTY, KCOV, ODD]) {
    assert.ok(fs.existsSync(path.join(dir, 'index.html')), `no report in ${dir} (run report-tests/run.sh)`);
  }
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vmc-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1100 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  // The report is self-contained: anything but file: is a bug (and would need the network).
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    problems.push(`request to ${url}`);
    return route.abort();
  });
});

after(async () => {
  await context?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

async function open(dir, file, hash = '') {
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${file}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${file}: console ${m.type()}: ${m.text()}`);
  });
  await page.goto(pathToFileURL(path.join(dir, file)).href + hash);
  return page;
}

const runCount = (dir) => fs.readdirSync(dir).filter((f) => /^run-\d+\.html$/.test(f)).length;

test('the index renders with no script error, no console error and no network request', async () => {
  const page = await open(ALL, 'index.html');
  assert.equal(await page.title(), 'vfio-mig-conform report');
  assert.equal(await page.locator('#legend .badge').count(), 9, 'the legend names the nine outcomes');
  await page.close();
  assert.deepEqual(problems, []);
});

test('every run has an 8x8 arc matrix coloured by outcome, with the oracle path on hover', async () => {
  const page = await open(ALL, 'index.html');
  const n = runCount(ALL);
  assert.equal(n, 4);
  const matrices = page.locator('table.arcs');
  assert.equal(await matrices.count(), n);
  for (let i = 0; i < n; i++) {
    assert.equal(await matrices.nth(i).locator('td.arc').count(), 64, `R${i + 1}`);
    assert.equal(await matrices.nth(i).locator('td.arc[data-cur="ERROR"].o-none').count(), 8, 'no check starts in ERROR');
  }
  const cls = (i, cur, nw) => matrices.nth(i).locator(`td.arc[data-cur="${cur}"][data-new="${nw}"]`);
  // R1, sim:v2 with every flag: all 56 arcs pass.
  assert.equal(await matrices.nth(0).locator('td.arc.o-pass').count(), 56);
  // R2, stop_copy_to_pre_copy_accepted: exactly the two STOP_COPY -> PRE_COPY* cells fail, in red.
  assert.equal(await matrices.nth(1).locator('td.arc.o-fail').count(), 2);
  const fail = cls(1, 'STOP_COPY', 'PRE_COPY');
  assert.match(await fail.getAttribute('class'), /\bo-fail\b/);
  assert.equal(await fail.evaluate((td) => getComputedStyle(td).backgroundColor), 'rgb(229, 57, 53)');
  assert.match(await fail.getAttribute('title'), /oracle: EINVAL \(STOP_COPY -> PRE_COPY\* is forbidden\)/);
  // R3, flags stop_copy,p2p: PRE_COPY and PRE_COPY_P2P cannot be reached (UNSUPPORTED, grey).
  assert.equal(await matrices.nth(2).locator('td.arc[data-cur="PRE_COPY"].o-unsupported').count(), 8);
  assert.equal(await matrices.nth(2).locator('td.arc.o-pass').count(), 40);
  assert.match(await cls(2, 'RUNNING', 'PRE_COPY').getAttribute('title'), /EINVAL \(the target state needs a flag the device lacks\)/);
  // R4, the real mtty driver: every arc passes, like the simulator with mtty's flags.
  assert.equal(await matrices.nth(3).locator('td.arc.o-pass').count(), 56);
  // The expected primitive path, from the oracle with the device's flags.
  assert.match(await cls(0, 'RUNNING', 'STOP_COPY').getAttribute('title'),
    /RUNNING -> RUNNING_P2P -> STOP -> STOP_COPY, returns a data fd/);
  assert.match(await cls(2, 'RESUMING', 'RUNNING').getAttribute('title'), /RESUMING -> STOP -> RUNNING_P2P -> RUNNING/);
  await page.close();
});

test('clicking an arc cell opens the check: failure block, expected path, reproducer, trace', async () => {
  const page = await open(ALL, 'index.html');
  await page.locator('table.arcs').nth(1).locator('td.arc[data-cur="STOP_COPY"][data-new="PRE_COPY"] a').click();
  await page.waitForURL(/run-2\.html#check-fsm\.arc\.stop_copy\.pre_copy$/);
  const section = page.locator('section[id="check-fsm.arc.stop_copy.pre_copy"]');
  await section.waitFor({ state: 'visible' });
  assert.match(await section.getAttribute('class'), /\bo-fail\b/);
  const text = await section.innerText();
  for (const want of ['V2-STATE-007', 'Expected', 'SET PRE_COPY from STOP_COPY fails with EINVAL', 'Actual',
    'succeeded, state now PRE_COPY', 'Reproduce: vfio-mig-conform', 'EINVAL (STOP_COPY -> PRE_COPY* is forbidden)']) {
    assert.ok(text.includes(want), `missing "${want}" in\n${text}`);
  }
  assert.ok(await section.locator('table.trace tr.hit').isVisible(), 'the failing step is highlighted in the trace');
  // The trace numbers steps as the failure block does (both from 1).
  const step = text.match(/Step (\d+)/);
  assert.ok(step, `no "Step N" in\n${text}`);
  assert.equal((await section.locator('table.trace tr.hit td').first().innerText()).trim(), step[1],
    'the highlighted trace row carries the failure block\'s step number');
  // "hide PASS" keeps the failures.
  await page.locator('#hide-pass').check();
  assert.ok(await section.isVisible());
  assert.equal(await page.locator('section.check.o-pass').first().isVisible(), false);
  await page.close();
});

test('clicking a clause row reveals expected vs actual', async () => {
  const page = await open(ALL, 'index.html');
  const row = page.locator('tr[id="clause-V2-STATE-007"]');
  const r2 = row.locator('td.verdict').nth(1);
  assert.equal(await r2.getAttribute('data-outcome'), 'FAIL');
  assert.equal(await row.locator('td.verdict').nth(0).getAttribute('data-outcome'), 'PASS');
  const expected = r2.locator('.finding .exp').first();
  assert.equal(await expected.isVisible(), false, 'closed before the click');
  await row.locator('td').nth(1).click(); // the statement cell
  assert.ok(await expected.isVisible(), 'open after the click');
  assert.match(await expected.innerText(), /fails with EINVAL/);
  assert.match(await r2.locator('.finding .act').first().innerText(), /succeeded, state now PRE_COPY/);
  await row.evaluate((tr) => tr.scrollIntoView({ block: 'start' }));
  await page.screenshot({ path: path.join(ARTIFACTS, 'clause-open.png') });
  await row.locator('td').nth(1).click();
  assert.equal(await expected.isVisible(), false, 'a second click closes it');
  // The mtty run: the documented deviation shows as XFAIL with the driver's actual behaviour.
  const pc = page.locator('tr[id="clause-V2-PRECOPY-007"] td.verdict').nth(3);
  assert.equal(await pc.getAttribute('data-outcome'), 'XFAIL');
  await page.locator('tr[id="clause-V2-PRECOPY-007"] td').nth(1).click();
  assert.match(await pc.locator('.finding .act').first().innerText(), /read returned 0/);
  await page.close();
});

test('the runs x clauses matrix has one column per run and filters to what differs', async () => {
  const page = await open(ALL, 'index.html');
  const heads = page.locator('table.mx thead th.run');
  assert.equal(await heads.count(), runCount(ALL));
  const r4 = await heads.nth(3).innerText();
  assert.ok(r4.includes('mtty') && r4.includes('6.12') && r4.includes('mtty-2'), r4);
  assert.match(await heads.nth(2).innerText(), /STOP_COPY\|P2P/);
  const rows = page.locator('table.mx tbody tr[data-clause]');
  const total = await rows.count();
  const cells = await page.locator('table.mx tbody tr[data-clause]').first().locator('td.mx').count();
  assert.equal(cells, runCount(ALL), 'one cell per run in every row');
  const stop7 = page.locator('table.mx tr[data-clause="V2-STATE-007"]');
  assert.equal(await stop7.locator('td.mx').nth(1).getAttribute('data-outcome'), 'FAIL');
  await page.locator('#only-differs').check();
  const visible = await rows.evaluateAll((rs) => rs.filter((r) => r.offsetParent !== null).map((r) => r.className));
  assert.ok(visible.length > 0 && visible.length < total, `${visible.length} of ${total} rows`);
  assert.ok(visible.every((c) => c === 'differs'), 'only differing clauses stay');
  assert.ok(await stop7.isVisible());
  // A matrix cell leads to the clause's row in the clause table.
  await stop7.locator('td.mx').nth(1).locator('a').click();
  await page.waitForURL(/#clause-V2-STATE-007$/);
  assert.ok(await page.locator('tr[id="clause-V2-STATE-007"] td.verdict').nth(1).locator('.finding .exp').first().isVisible(),
    'arriving at a clause opens its details');
  await page.close();
});

test('fuzz coverage is shown for a record with fuzz lines', async () => {
  const page = await open(ALL, 'index.html');
  const row = page.locator('table.fuzzsum tr').nth(1);
  assert.match(await row.innerText(), /R1.*\b5 of 42\b/s);
  await row.locator('a').click();
  await page.waitForURL(/run-1\.html#fuzz-1$/);
  const fz = page.locator('section[id="fuzz-1"]');
  assert.equal(await fz.locator('.arcs-covered').innerText(), '5');
  assert.equal(await fz.locator('.arcs-possible').innerText(), '42');
  assert.equal(await fz.locator('td.hit').count(), 5);
  assert.equal(await fz.locator('.error-paths').innerText(), '3');
  assert.ok((await fz.innerText()).includes('set_state:EINVAL'));
  assert.equal(await page.locator('table.mx').count(), 0, 'a run page has no runs matrix');
  await page.close();
});

test('kernel coverage: guided and blind in one plot, the driver\'s functions with covered and uncovered lines', async () => {
  const page = await open(KCOV, 'index.html');
  const plot = page.locator('.kcov-compare svg.pcplot');
  assert.equal(await plot.count(), 1);
  const guided = plot.locator('polyline.series.guided');
  const blind = plot.locator('polyline.series.blind');
  assert.equal(await guided.count(), 1);
  assert.equal(await blind.count(), 1);
  const g = Number(await guided.getAttribute('data-final'));
  const b = Number(await blind.getAttribute('data-final'));
  // The checked-in sessions (same seed, same 300 s budget): each curve ends at its session's
  // count of distinct PCs (whichever reached more: docs/fuzzing.md has the figures).
  assert.ok(g > 100 && b > 100, `guided ${g}, blind ${b}`);
  const box = await plot.boundingBox();
  assert.ok(box.width > 300 && box.height > 100, 'the plot is drawn');
  await plot.screenshot({ path: path.join(ARTIFACTS, 'kcov-plot.png') });
  await page.close();

  const run = await open(KCOV, 'run-1.html');
  const kc = run.locator('section[id="fuzz-1"] .kcov');
  assert.equal(await kc.getAttribute('data-source'), 'kcov');
  assert.equal(await kc.getAttribute('data-guided'), 'true');
  assert.equal(Number(await kc.getAttribute('data-pcs')), g);
  const blindRun = await open(KCOV, 'run-2.html', '#fuzz-1');
  const kb = blindRun.locator('section[id="fuzz-1"] .kcov');
  assert.equal(await kb.getAttribute('data-guided'), 'false');
  assert.equal(Number(await kb.getAttribute('data-pcs')), b);
  await blindRun.close();
  const dc = kc.locator('.driver-coverage');
  const blocks = Number(await dc.getAttribute('data-blocks'));
  const covered = Number(await dc.getAttribute('data-covered'));
  assert.ok(blocks > 100 && covered > 0 && covered <= blocks, `${covered} of ${blocks}`);
  assert.ok(await dc.locator('tr.func').count() >= 15, 'mtty\'s migration functions are listed');
  const fn = dc.locator('details#fn-mtty_set_state');
  assert.equal(await fn.locator('span.line').first().isVisible(), false, 'closed until clicked');
  await dc.locator('tr.func[data-function="mtty_set_state"] a').click();
  await run.waitForURL(/#fn-mtty_set_state$/);
  if ((await fn.getAttribute('open')) === null) await fn.locator('summary').click();
  assert.ok(await fn.locator('span.line.cov').first().isVisible());
  assert.ok((await fn.innerText()).includes('mdev_state'), 'the source text of the lines is shown');
  // Every function's uncovered and covered lines add up to its reached blocks.
  for (const row of await dc.locator('tr.func').all()) {
    const name = await row.getAttribute('data-function');
    const cells = await row.locator('td').allInnerTexts();
    const lines = await dc.locator(`details[id="fn-${name}"] span.line`).evaluateAll((ls) =>
      ls.map((l) => /(\d+) of (\d+)/.exec(l.title).slice(1).map(Number)));
    assert.equal(lines.reduce((a, [c]) => a + c, 0), Number(cells[2]), name);
    assert.equal(lines.reduce((a, [, t]) => a + t, 0), Number(cells[1]), name);
  }
  await dc.screenshot({ path: path.join(ARTIFACTS, 'kcov-driver.png') });
  await run.close();
  assert.deepEqual(problems, []);
});

test('every link of the reports resolves to an existing page and anchor', async () => {
  let checked = 0;
  for (const dir of [ALL, MTTY, KCOV, ODD]) {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.html'));
    const ids = new Map();
    const links = [];
    for (const file of files) {
      const page = await open(dir, file);
      ids.set(file, new Set(await page.locator('[id]').evaluateAll((es) => es.map((e) => e.id))));
      for (const href of await page.locator('a[href]').evaluateAll((as) => as.map((a) => a.href))) {
        links.push([file, href]);
      }
      await page.close();
    }
    for (const [from, href] of links) {
      const url = new URL(href);
      assert.equal(url.protocol, 'file:', `${from}: ${href} leaves the report`);
      const target = fileURLToPath(url);
      assert.equal(path.dirname(target), dir, `${from}: ${href} leaves the report directory`);
      const file = path.basename(target);
      assert.ok(ids.has(file), `${from}: ${href}: no such page`);
      const frag = decodeURIComponent(url.hash.slice(1));
      assert.ok(!frag || ids.get(file).has(frag), `${from}: ${href}: no element #${frag}`);
      checked++;
    }
  }
  assert.ok(checked > 5000, `only ${checked} links`);
  assert.deepEqual(problems, []);
});

// No horizontal scrollbar on the page: the widest table scrolls inside its own box.
async function assertNoOverflow(page, what) {
  const [scroll, client] = await page.evaluate(() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]);
  assert.ok(scroll <= client, `${what}: the page is ${scroll} px wide in a ${client} px window`);
}

test('four runs (and five) fit a 1400 px window: no horizontal overflow of the page', async () => {
  for (const [dir, file] of [[ALL, 'index.html'], [ODD, 'index.html'], [ALL, 'diff.html'], [ALL, 'run-4.html']]) {
    const page = await open(dir, file);
    assert.equal(page.viewportSize().width, 1400);
    await assertNoOverflow(page, `${path.basename(dir)}/${file}`);
    if (file === 'index.html') {
      // Opened verdicts (expected vs actual of every run) must not widen the page either.
      await page.locator('tr[id="clause-V2-STATE-007"] th').first().click();
      assert.ok(await page.locator('tr[id="clause-V2-STATE-007"] details[open]').count() > 0);
      await assertNoOverflow(page, `${path.basename(dir)}/${file} with a clause open`);
    }
    await page.close();
  }
});

test('runs are named by their device spec, the defect included, in the Runs table and the headers', async () => {
  const page = await open(ALL, 'index.html');
  // The record holds the spec in its canonical form (every key spelled out).
  const specs = await page.locator('table.runs td.spec').allInnerTexts();
  assert.equal(specs.length, 4);
  assert.ok(specs.slice(0, 3).every((s) => s.startsWith('sim:v2')), specs.join(' | '));
  assert.ok(!specs[0].includes('defect='), specs[0]);
  const spec = specs[1];
  assert.match(spec, /defect=stop_copy_to_pre_copy_accepted\b/);
  assert.match(spec, /defect=eof_at_precopy_temporary_end\b/);
  assert.match(specs[2], /flags=stop_copy,p2p(&|$)/);
  assert.equal(new Set(specs).size, 4, 'four runs, four names');
  for (const table of ['table.mx', 'table.clauses']) {
    const heads = page.locator(`${table} thead th.run`);
    assert.ok((await heads.nth(1).innerText()).includes(spec), table);
    assert.notEqual(await heads.nth(0).innerText(), await heads.nth(1).innerText(), `${table}: two sim runs look different`);
  }
  await page.close();
});

test('a run killed before its end line or interrupted carries a warning, never a plain PASS', async () => {
  const page = await open(ODD, 'index.html');
  const rows = page.locator('table.runs tr[data-run]');
  assert.equal(await rows.count(), 5);
  const warned = [];
  for (let i = 0; i < 5; i++) warned.push(await rows.nth(i).locator('.badge.unfinished').count());
  assert.deepEqual(warned, [0, 0, 1, 1, 0], 'R3 (no end line) and R4 (interrupted) are flagged');
  assert.match(await rows.nth(2).innerText(), /no end line/);
  assert.match(await rows.nth(3).innerText(), /interrupted by SIGINT/);
  assert.ok(await rows.nth(3).locator('.badge.unfinished').isVisible());
  assert.equal(await page.locator('table.mx thead th.run').nth(3).locator('.badge.unfinished').count(), 1);
  await page.close();
  for (const [file, warn] of [['run-1.html', 0], ['run-3.html', 1], ['run-4.html', 1]]) {
    const run = await open(ODD, file);
    assert.equal(await run.locator('p.warning.unfinished').count(), warn, file);
    await run.close();
  }
});

test('a fuzz finding counts in the clause verdicts', async () => {
  const page = await open(ODD, 'index.html');
  const spec = await page.locator('table.runs td.spec').nth(4).innerText();
  assert.match(spec, /^sim:v2\?.*defect=stop_copy_to_pre_copy_accepted\b/);
  const cell = page.locator('tr[id="clause-V2-STATE-007"] td.verdict').nth(4);
  assert.equal(await cell.getAttribute('data-outcome'), 'FAIL', 'the fuzzer broke V2-STATE-007 in R5');
  assert.equal(await page.locator('table.mx tr[data-clause="V2-STATE-007"] td.mx').nth(4).getAttribute('data-outcome'), 'FAIL');
  await cell.locator('summary').click();
  await cell.locator('a.chip').first().click();
  await page.waitForURL(/run-5\.html#check-fuzz\.live\./);
  assert.ok(await page.locator('section.check.o-fail').first().isVisible());
  await page.close();
});

test('a partial run: clauses it did not run are "not run", not differences', async () => {
  const page = await open(ODD, 'index.html');
  const rows = await page.locator('table.mx tbody tr[data-clause]').evaluateAll((rs) => rs.map((r) => ({
    cls: r.className,
    outs: [...r.querySelectorAll('td.mx')].map((td) => td.dataset.outcome),
  })));
  const notRun = rows.filter((r) => r.outs[1] === '');
  assert.ok(notRun.length > 0, 'the partial run R2 leaves clauses not run');
  for (const r of rows) {
    const observed = new Set(r.outs.filter((o) => o !== ''));
    assert.equal(r.cls, observed.size > 1 ? 'differs' : 'same', JSON.stringify(r));
  }
  assert.ok(rows.filter((r) => r.cls === 'same').length > rows.length / 2, 'most clauses agree');
  await page.close();
});

test('the clause tables filter by level, outcome and family', async () => {
  const page = await open(ALL, 'index.html');
  const rows = page.locator('table.clauses tbody tr[data-clause]');
  const total = await rows.count();
  const visible = () => rows.evaluateAll((rs) => rs.filter((r) => r.offsetParent !== null).map((r) => r.dataset));
  await page.locator('#filter-outcome').selectOption('FAIL');
  let v = await visible();
  assert.ok(v.length > 0 && v.length < total, `${v.length} of ${total}`);
  assert.ok(v.every((d) => d.outcomes.includes(' FAIL ')));
  assert.ok(v.some((d) => d.clause === 'V2-STATE-007'));
  assert.match(await page.locator('#filter-count').innerText(), new RegExp(`^${v.length} clauses match$`));
  const mx = await page.locator('table.mx tbody tr[data-clause]').evaluateAll((rs) => rs.filter((r) => r.offsetParent !== null).length);
  assert.equal(mx, v.length, 'the runs x clauses matrix follows the same filter');
  await page.locator('#filter-outcome').selectOption('');
  await page.locator('#filter-family').selectOption('V2-STATE');
  v = await visible();
  assert.ok(v.length > 0 && v.every((d) => d.clause.startsWith('V2-STATE-')));
  await page.locator('#filter-family').selectOption('');
  await page.locator('#filter-level').selectOption('MUST');
  v = await visible();
  assert.ok(v.length > 0 && v.length < total && v.every((d) => d.level === 'MUST'));
  await page.locator('#filter-level').selectOption('');
  assert.equal((await visible()).length, total);
  await page.close();
});

test('the diff page compares two chosen runs check by check, like report A B --diff', async () => {
  const index = await open(ALL, 'index.html');
  await index.locator('p.diff-link a').click();
  await index.waitForURL(/diff\.html$/);
  await index.close();
  const page = await open(ALL, 'diff.html');
  const rows = page.locator('#diff tbody tr');
  const shown = () => rows.evaluateAll((rs) => rs.filter((r) => r.offsetParent !== null).map((r) => r.dataset.check));
  const summary = () => page.locator('#diff-summary').innerText();
  // R1 (sim:v2) vs R2 (the defects): the defect's arc differs, and only differences show.
  let m = (await summary()).match(/^(\d+) checks compared, (\d+) differ \(R1 vs R2\)$/);
  assert.ok(m, await summary());
  const differ = Number(m[2]);
  assert.ok(differ > 0);
  let s = await shown();
  assert.equal(s.length, differ);
  assert.ok(s.includes('fsm.arc.stop_copy.pre_copy'), s.join(' '));
  // A run against itself: nothing differs.
  await page.locator('#diff-b').selectOption('0');
  assert.match(await summary(), / 0 differ \(R1 vs R1\)$/);
  assert.equal((await shown()).length, 0);
  // The same prefix filter as --filter.
  await page.locator('#diff-b').selectOption('1');
  await page.locator('#diff-filter').fill('fsm.arc.stop_copy');
  s = await shown();
  assert.ok(s.length > 0 && s.length < differ && s.every((c) => c.startsWith('fsm.arc.stop_copy')), s.join(' '));
  await page.locator('#diff-filter').fill('');
  await page.locator('#diff-all').check();
  assert.equal((await shown()).length, await rows.count(), 'show agreeing checks shows every row');
  await page.screenshot({ path: path.join(ARTIFACTS, 'diff.png') });
  await page.close();
  assert.deepEqual(problems, []);
});

test('the mtty report alone: one run, no runs matrix, screenshots', async () => {
  const page = await open(MTTY, 'index.html');
  assert.equal(await page.locator('table.mx').count(), 0);
  assert.equal(await page.locator('table.arcs td.arc').count(), 64);
  assert.equal(await page.locator('table.clauses td.verdict[data-outcome="XFAIL"]').count() > 0, true);
  await page.close();
  const all = await open(ALL, 'index.html');
  await all.screenshot({ path: path.join(ARTIFACTS, 'report.png') });
  await all.locator('.arcgrid').screenshot({ path: path.join(ARTIFACTS, 'arc-matrices.png') });
  await all.close();
  const run = await open(ALL, 'run-2.html');
  await run.screenshot({ path: path.join(ARTIFACTS, 'run-defect.png') });
  await run.close();
  for (const f of ['report.png', 'arc-matrices.png', 'run-defect.png', 'clause-open.png']) {
    assert.ok(fs.statSync(path.join(ARTIFACTS, f)).size > 10000, f);
  }
  assert.deepEqual(problems, []);
});

/**
 * The HTML report in a real headless browser: Debian's chromium driven by
 * playwright-core. The page is opened from disk; the test checks the first
 * divergence is marked and its state diff and contract status are shown,
 * that the page asked for nothing but itself, and saves screenshots to
 * out/report-browser.png and out/report-browser-divergence.png.
 *
 * Without chromium (NVX_CHROMIUM names another binary) the test fails under
 * CI=true and is skipped elsewhere, with a warning.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { nvx } from '../fixtures/nvx';
import { registerOpenBitmap } from '../fixtures/open-bitmap-path';

const CHROMIUM = process.env.NVX_CHROMIUM || '/usr/bin/chromium';
const ROOT = path.join(__dirname, '..', '..', '..', '..');
const DIVERGING = path.join(__dirname, '..', 'fixtures', 'diverging.nvx');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const inCI = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';
const available = fs.existsSync(CHROMIUM);
const MISSING = `chromium not found at ${CHROMIUM}: install it (Debian: apt-get install chromium) or point NVX_CHROMIUM at a Chromium binary`;

jest.setTimeout(120_000);

if (!available && !inCI) {
  // eslint-disable-next-line no-console
  console.warn(`skipping the browser test of nvx report: ${MISSING}`);
  test.skip('nvx report in a headless browser (chromium not installed)', () => undefined);
} else if (!available) {
  test('nvx report in a headless browser', () => {
    throw new Error(MISSING);
  });
} else {
  let dir: string;

  beforeAll(() => {
    registerOpenBitmap();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-browser-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('nvx report in a headless browser: divergence marker, state diff, contract status; screenshot', async () => {
    const html = path.join(dir, 'report.html');
    const r = await nvx(['report', DIVERGING, '-o', html, '--profiles', 'reference,msr-bitmap=test-open-bitmap,optimized', '-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1); // the page is written; a bug divergence exits 1

    const { chromium } = await import('playwright-core');
    // a fresh profile directory: nothing from an earlier run, nothing shared with a desktop browser
    const context = await chromium.launchPersistentContext(path.join(dir, 'user-data'), { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1400, height: 900 } });
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      const requests: string[] = [];
      const errors: string[] = [];
      page.on('request', (q) => requests.push(q.url()));
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      const url = 'file://' + html;
      await page.goto(url);
      await page.waitForSelector('html[data-ready="1"]');

      // the summary names the bug divergence; the button scrolls to the divergent row
      await expect(page.locator('.card.bug .verdict').innerText()).resolves.toBe('DIVERGENCE (bug)');
      await page.click('#jump');
      const row = page.locator('#divergence');
      await row.waitFor({ state: 'visible' });
      expect(await row.isVisible()).toBe(true);
      // the first event after which the states differ (the one nvx bisect names); outcomes differ from event 13
      expect(await row.getAttribute('data-index')).toBe('12');
      expect(await page.locator('.card.bug .first-observable').innerText()).toBe('first observable (outcomes differ) at event 13');
      expect(await row.locator('.marker').innerText()).toBe('first divergence');
      const box = await row.boundingBox();
      expect(box).not.toBeNull();
      // the first cell whose outcome differs is highlighted
      const bg = await page.locator('#events-table tr[data-index="13"] td.out.differs').first().evaluate((el) => (globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } }).getComputedStyle(el).backgroundColor);
      expect(bg).not.toBe('rgba(0, 0, 0, 0)');

      // the timeline marker
      expect(await page.locator('#timeline-svg .divergence-marker').count()).toBe(1);
      expect(await page.locator('#timeline-svg .divergence-marker').isVisible()).toBe(true);

      // the state diff and the contract status
      const diff = page.locator('#divergence-detail table.arch-diff');
      await diff.scrollIntoViewIfNeeded();
      expect(await diff.isVisible()).toBe(true);
      const cells = await diff.locator('tbody tr').first().locator('td').allInnerTexts();
      expect(cells).toEqual(['vcpu 0 L2 MSR_IA32_SPEC_CTRL', '0x1', '(absent)']);
      // the internals of both profiles side by side, the deciding facts highlighted first
      const internals = page.locator('#divergence-detail table.explain').first();
      await internals.scrollIntoViewIfNeeded();
      expect(await internals.isVisible()).toBe(true);
      const firstRow = internals.locator('tbody tr').first();
      expect(await firstRow.getAttribute('class')).toBe('decides');
      const hl = await firstRow.locator('td').first().evaluate((el) => (globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } }).getComputedStyle(el).backgroundColor);
      expect(hl).toBe('rgb(255, 243, 196)');
      fs.mkdirSync(path.join(ROOT, 'out'), { recursive: true });
      await page.locator('#divergence-detail .detail').first().screenshot({ path: path.join(ROOT, 'out', 'report-browser-divergence.png') });
      // chart labels are not clipped: every text of the charts lies inside its svg
      const clipped = await page.evaluate(() => {
        const out: string[] = [];
        const doc = (globalThis as unknown as { document: { querySelectorAll(s: string): ArrayLike<{ getBoundingClientRect(): { left: number; right: number }; textContent: string | null; closest(s: string): { getBoundingClientRect(): { left: number; right: number } } | null }> } }).document;
        const texts = doc.querySelectorAll('svg.chart text');
        for (let i = 0; i < texts.length; i++) {
          const t = texts[i];
          const svg = t.closest('svg')!.getBoundingClientRect();
          const b = t.getBoundingClientRect();
          if (b.left < svg.left - 1 || b.right > svg.right + 1) out.push(t.textContent ?? '');
        }
        return out;
      });
      expect(clipped).toEqual([]);
      const contract = page.locator('#divergence-detail .contract-status');
      expect(await contract.isVisible()).toBe(true);
      expect(await contract.innerText()).toMatch(/none broken before this event, so this is a bug/);

      // the filter keeps the divergent row
      await page.check('#only-interesting');
      expect(await row.isVisible()).toBe(true);
      expect(await page.locator('#events-table tbody tr[data-index="1"]').isVisible()).toBe(false);
      await page.uncheck('#only-interesting');

      // self-contained: the page asked for itself only, and ran without errors
      expect(requests).toEqual([url]);
      expect(errors).toEqual([]);

      await page.click('#jump');
      const shot = path.join(ROOT, 'out', 'report-browser.png');
      fs.mkdirSync(path.dirname(shot), { recursive: true });
      await page.screenshot({ path: shot });
      expect(fs.statSync(shot).size).toBeGreaterThan(10_000);
    } finally {
      await context.close();
    }
  });
}

// End-to-end test of the audience page in a real browser (Debian's Chromium via playwright-core).
//
//   node tests/e2e/audience.mjs http://127.0.0.1:7878/
//
// Needs a running `parvis run` (or anything speaking docs/protocol.md) behind the URL, and
// /usr/bin/chromium (`apt-get install -y chromium`). Set PARVIS_E2E_SCREENSHOT=/path/shot.png
// to keep a full-page screenshot at a phone size. Exits 0 after printing `e2e ok`, or non-zero
// with the step that failed, the page's log lines and its console output.

import { chromium } from 'playwright-core';

const TOTAL_MS = 60_000;   // the whole run, launch included
const STEP_MS = 10_000;    // one step
const CHROMIUM = process.env.PARVIS_E2E_CHROMIUM || '/usr/bin/chromium';
const NAME = 'Visiteuse Été';
const XSS = '<img src=x onerror="window.__pwned=1">hello';

const url = process.argv[2];
if (!url || !/^https?:\/\//.test(url)) {
  console.error('usage: node tests/e2e/audience.mjs <page-url>   e.g. http://127.0.0.1:7878/');
  process.exit(2);
}

let browser = null;
let page = null;
let step = 'start';
const consoleLines = [];

function log(msg) {
  console.log(`[e2e] ${msg}`);
}

async function dumpPage() {
  if (!page) return;
  try {
    const lines = await page.$$eval('#log > *', (els) =>
      els.slice(-20).map((e) => `${e.dataset.kind ?? '?'}: ${e.textContent}`));
    const status = await page.$eval('#status',
      (e) => `[data-state=${e.dataset.state}] ${e.innerText.replace(/\s+/g, ' ').trim()}`);
    console.error(`  status: ${status}`);
    console.error(`  #log (last ${lines.length} lines):`);
    for (const l of lines) console.error(`    ${l}`);
  } catch (e) {
    console.error(`  (could not read the page: ${e.message.split('\n')[0]})`);
  }
  if (consoleLines.length) {
    console.error('  browser console:');
    for (const l of consoleLines.slice(-20)) console.error(`    ${l}`);
  }
}

async function fail(message) {
  console.error(`e2e FAILED at step "${step}": ${message}`);
  await dumpPage();
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}

// Hard limit for the whole run, whatever hangs (launch, navigation, a stuck close).
const watchdog = setTimeout(() => {
  console.error(`e2e FAILED: the run took more than ${TOTAL_MS / 1000} s (stuck at step "${step}")`);
  if (browser) browser.close().catch(() => {});
  setTimeout(() => process.exit(1), 2000).unref();
  process.exitCode = 1;
}, TOTAL_MS);

// Run one step: a name for the report and a body that throws on failure.
async function run(name, body) {
  step = name;
  const t0 = Date.now();
  try {
    await body();
  } catch (e) {
    await fail(e.message.split('\n').slice(0, 4).join('\n  '));
  }
  log(`ok  ${name} (${Date.now() - t0} ms)`);
}

// Wait for a condition evaluated in the page; on timeout, throw `what`.
async function waitInPage(what, fn, arg, timeout = STEP_MS) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    if (/Timeout/i.test(e.message)) throw new Error(`${what} (not within ${timeout} ms)`);
    throw e;
  }
}

async function sendChat(text) {
  await page.fill('#chat-input', text, { timeout: STEP_MS });
  await page.press('#chat-input', 'Enter', { timeout: STEP_MS });
  const left = await page.inputValue('#chat-input');
  if (left !== '') throw new Error(`the chat input was not cleared after sending (still "${left}")`);
}

await run('launch chromium', async () => {
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 20_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  } catch (e) {
    throw new Error(`could not start ${CHROMIUM} (apt-get install -y chromium?): ${e.message}`);
  }
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
    hasTouch: true,
  });
  context.setDefaultTimeout(STEP_MS);
  page = await context.newPage();
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`uncaught: ${e.message}`));
  page.on('dialog', (d) => { consoleLines.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
});

await run('a. open the page and join', async () => {
  const resp = await page.goto(url, { waitUntil: 'load', timeout: STEP_MS }).catch((e) => {
    throw new Error(`could not open ${url}: ${e.message}`);
  });
  if (!resp || !resp.ok()) throw new Error(`GET ${url} answered ${resp ? resp.status() : 'nothing'}`);
  await page.waitForSelector('#name', { state: 'visible' }).catch(() => {
    throw new Error('no visible #name field on the page');
  });
  await page.fill('#name', NAME);
  await page.click('#join');
  await waitInPage(
    'the status never said connected after join (no `welcome`?)',
    () => document.querySelector('#status')?.dataset.state === 'connected',
  );
  const venue = (await page.textContent('#venue'))?.trim();
  if (!venue) throw new Error('the venue title is empty after welcome');
  log(`joined "${venue}"`);
  const errors = await page.$$eval('#log [data-kind="error"]', (els) => els.map((e) => e.textContent));
  if (errors.length) throw new Error(`error line(s) after join: ${errors.join(' | ')}`);
});

await run('b. !light red changes stage_light', async () => {
  await waitInPage(
    'no stage_light row in #params (no `state` with params?)',
    () => !!document.querySelector('#params [data-param="stage_light"] .value'),
  );
  await sendChat('!light red');
  await waitInPage(
    '#params [data-param="stage_light"] .value never showed #ff0000',
    () => document.querySelector('#params [data-param="stage_light"] .value')
      ?.textContent.trim().toLowerCase() === '#ff0000',
  );
  await waitInPage(
    'no effect line about stage_light in #log',
    () => [...document.querySelectorAll('#log [data-kind="effect"]')]
      .some((e) => e.textContent.includes('stage_light')),
  );
});

await run('c. markup in chat stays text', async () => {
  await sendChat(XSS);
  // Wait for the line, or for the markup to have been parsed (an <img> in the log).
  await waitInPage(
    `the chat line ${JSON.stringify(XSS)} never appeared in #log`,
    (xss) => !!document.querySelector('#log img') || [...document.querySelectorAll('#log [data-kind="chat"]')]
      .some((e) => e.textContent.includes(xss) || e.textContent.includes('hello')),
    XSS,
  );
  await page.waitForTimeout(200); // let a would-be onerror handler fire
  const imgs = await page.locator('#log img').count();
  if (imgs !== 0) throw new Error(`#log contains ${imgs} <img> element(s): chat text was parsed as HTML`);
  const pwned = await page.evaluate(() => typeof window.__pwned);
  if (pwned !== 'undefined') throw new Error('window.__pwned is set: script from chat text ran');
  const shown = await page.$$eval('#log [data-kind="chat"]', (els, xss) =>
    els.some((e) => e.textContent.includes(xss)), XSS);
  if (!shown) throw new Error(`the chat line is not shown as the text ${JSON.stringify(XSS)}`);
  // The accents of the name must have survived the round trip through the server.
  const from = await page.$$eval('#log [data-kind="chat"]', (els, xss) => {
    const line = els.find((e) => e.textContent.includes(xss));
    return line?.querySelector('.from')?.textContent ?? line?.textContent ?? '';
  }, XSS);
  if (!from.includes(NAME)) throw new Error(`the chat line is not from "${NAME}" (from: "${from}")`);
});

await run('d. react', async () => {
  const button = page.locator('#reactions button').first();
  if ((await page.locator('#reactions button').count()) === 0) {
    throw new Error('no reaction buttons (welcome.reactions empty?)');
  }
  const countErrors = () => page.locator('#log [data-kind="error"]').count();
  const before = await countErrors();
  await button.click();
  await page.waitForTimeout(1000);
  if ((await countErrors()) !== before) {
    const last = await page.locator('#log [data-kind="error"]').last().textContent();
    throw new Error(`an error line appeared after the reaction: ${last}`);
  }
  const state = await page.$eval('#status', (e) => e.dataset.state);
  if (state !== 'connected') throw new Error(`no longer connected after the reaction (${state})`);
});

// With PARVIS_E2E_WINDOW=1 the venue plays the built-in show, whose cue 2 (10 s in) opens
// `!confettis` for 20 s: the page must show it with a countdown, and the command must work.
if (process.env.PARVIS_E2E_WINDOW === '1') {
  await run('e. a window opened by the show', async () => {
    await waitInPage(
      '#windows never showed !confettis with a countdown',
      () => {
        const panel = document.querySelector('#windows');
        return !!panel && !panel.hidden && panel.textContent.includes('!confettis')
          && /\d:\d\d/.test(panel.querySelector('.countdown')?.textContent ?? '');
      },
      undefined,
      25_000,
    );
    const first = await page.$eval('#windows .countdown', (e) => e.textContent);
    await page.waitForTimeout(1500);
    const later = await page.$eval('#windows .countdown', (e) => e.textContent);
    if (first === later) throw new Error(`the countdown did not move (${first})`);
    await sendChat('!confettis');
    await waitInPage(
      'no effect line for !confettis in #log',
      () => [...document.querySelectorAll('#log [data-kind="effect"]')].some((e) => e.textContent.includes('confetti')),
    );
    log(`window: ${first} then ${later}`);
  });
  await run('f. surtitles in the member\'s language', async () => {
    // The prelude's surtitles run from 2 s to 38 s with gaps: wait for one in English (the
    // browser's language), pick French, and wait for a French one.
    await waitInPage(
      'no English surtitle in #surtitle-text',
      () => {
        const t = document.querySelector('#surtitle-text');
        return !!t && t.lang === 'en' && t.textContent.trim() !== '';
      },
      undefined,
      25_000,
    );
    await page.selectOption('#surtitle-lang', 'fr');
    await waitInPage(
      'choosing fr did not show a French surtitle',
      () => {
        const t = document.querySelector('#surtitle-text');
        return !!t && t.lang === 'fr' && /[a-zà-ÿ]/.test(t.textContent) && t.textContent.trim() !== '';
      },
      undefined,
      25_000,
    );
    log(`surtitle: ${await page.textContent('#surtitle-text')}`);
    await page.click('#text-only');
    await waitInPage('the text-only link did not switch the view', () => document.body.classList.contains('text-only'));
    const reactions = await page.$eval('#reactions', (e) => getComputedStyle(e).display);
    if (reactions !== 'none') throw new Error('the text-only view still shows the reaction buttons');
    await page.click('#surtitle-contrast');
    const contrast = await page.$eval('#surtitle', (e) => e.classList.contains('contrast'));
    if (!contrast) throw new Error('the high-contrast button did nothing');
  });
}

const shot = process.env.PARVIS_E2E_SCREENSHOT;
if (shot) {
  await run('e. screenshot', async () => {
    await page.screenshot({ path: shot, fullPage: true, timeout: STEP_MS });
    log(`screenshot: ${shot}`);
  });
}

step = 'finish';
const uncaught = consoleLines.filter((l) => l.startsWith('uncaught:'));
if (uncaught.length) await fail(`uncaught exception(s) in the page: ${uncaught.join(' | ')}`);
await browser.close().catch(() => {});
clearTimeout(watchdog);
console.log('e2e ok');
process.exit(0);

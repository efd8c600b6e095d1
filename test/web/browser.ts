import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrowserContext, chromium, Page } from 'playwright-core';
import puppeteer, { Browser as PBrowser, Page as PPage } from 'puppeteer-core';

/**
 * Debian's Chromium driven by playwright-core for the web page's tests:
 * headless, a fresh profile per browser, nothing fetched from the internet
 * (no browser download, no component updates, no sync).
 */

export const CHROMIUM = '/usr/bin/chromium';
export const FIREFOX = '/usr/bin/firefox-esr';

/** Why the browser tests cannot run here, or false. */
export function browserSkipReason(): string | false {
  if (!existsSync(CHROMIUM)) return `needs Debian's chromium at ${CHROMIUM} (scripts/setup.sh installs it with apt-get)`;
  return false;
}

export interface TestBrowser {
  context: BrowserContext;
  /** A new tab (its own sessionStorage, so its own login) that records console errors and page errors. */
  newPage(): Promise<TestPage>;
  close(): Promise<void>;
}

export interface TestPage {
  page: Page;
  /** Console messages of type error, uncaught exceptions and failed requests, as text. */
  errors: string[];
}

export async function launchBrowser(): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'tf-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 800 },
      acceptDownloads: true,
      timeout: 60_000,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  // The first tab is opened with the browser; tests open their own.
  for (const p of context.pages()) await p.close();
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      const errors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
      page.on('requestfailed', (r) => {
        // A download the test saved is not a failure; anything else the page asked for is.
        if (r.failure()?.errorText !== 'net::ERR_ABORTED') errors.push(`request failed: ${r.url()}: ${r.failure()?.errorText}`);
      });
      return { page, errors };
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Logs in through the page's form and waits for the first view after login. */
export async function logIn(page: Page, baseUrl: string, user: string, password: string, hash = ''): Promise<void> {
  await page.goto(`${baseUrl}/${hash}`);
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#nav').waitFor({ state: 'visible' });
}

export type BrowserKind = 'chromium' | 'firefox';

/** Why a browser cannot be driven here, or false. */
export function browserKindSkipReason(kind: BrowserKind): string | false {
  if (kind === 'chromium') return browserSkipReason();
  return existsSync(FIREFOX) ? false : `needs Debian's firefox-esr at ${FIREFOX} (scripts/setup.sh installs it with apt-get)`;
}

export interface PuppeteerBrowser {
  browser: PBrowser;
  /** A new tab that records console errors and page errors. */
  newPage(): Promise<{ page: PPage; errors: string[] }>;
  close(): Promise<void>;
}

/**
 * Debian's Chromium or Firefox ESR driven by puppeteer-core, so one test
 * body runs in both (playwright-core drives only its own patched Firefox,
 * which cannot be downloaded here; puppeteer-core drives the stock one over
 * WebDriver BiDi). Headless, a fresh profile, nothing fetched from the internet.
 */
export async function launchPuppeteer(kind: BrowserKind): Promise<PuppeteerBrowser> {
  const profile = mkdtempSync(join(tmpdir(), `tf-${kind}-`));
  let browser: PBrowser;
  try {
    browser =
      kind === 'firefox'
        ? await puppeteer.launch({
            browser: 'firefox',
            executablePath: FIREFOX,
            headless: true,
            userDataDir: profile,
            timeout: 60_000,
            // No updates, no telemetry, no captive-portal or connectivity checks.
            extraPrefsFirefox: {
              'app.update.enabled': false,
              'network.captive-portal-service.enabled': false,
              'network.connectivity-service.enabled': false,
              'datareporting.policy.dataSubmissionEnabled': false,
              'toolkit.telemetry.enabled': false,
            },
          })
        : await puppeteer.launch({
            executablePath: CHROMIUM,
            headless: true,
            userDataDir: profile,
            timeout: 60_000,
            args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
          });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    browser,
    async newPage() {
      const page = await browser.newPage();
      page.setDefaultTimeout(20_000);
      await page.setViewport({ width: 1280, height: 800 });
      const errors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`page error: ${(e as Error).message ?? String(e)}`));
      return { page, errors };
    },
    async close() {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** logIn for a puppeteer page. */
export async function logInPuppeteer(page: PPage, baseUrl: string, user: string, password: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(password);
  await page.click('form button[type="submit"]');
  await page.waitForSelector('#nav', { visible: true });
}

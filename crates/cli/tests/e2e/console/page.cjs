// The console's page in headless Chromium, as an operator uses it: sign in, find a failed
// event by its dedupe key, see its failed attempt, retry it and see the new delivered attempt;
// bulk-retry the other dead letters through their preview; send a test webhook and see its
// attempt. Run by page.rs (dev/browser.sh node page.cjs CONFIG_JSON); prints one JSON line
// with what it saw, exits non-zero on the first thing that is not as expected.
"use strict";

const { chromium } = require("playwright-core");

const config = JSON.parse(process.argv[2]);
const { base, token, dedupeKey, eventId, bulkCount, subscription, markup, newSubscriptionUrl, shots } = config;
const WAIT = { timeout: 60_000 };

const started = Date.now();
const steps = {};

async function shot(page, name) {
  steps[name] = Date.now() - started;
  for (const dir of shots) await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    // The tests run as root on CI, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, timezoneId: "Europe/Amsterdam", locale: "en-GB" });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Chromium logs every 4xx answer as an error: the sign-in's 401 is expected.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  const seen = {};

  // Sign in: the first request is refused and the dialog asks for a token.
  await page.goto(`${base}/ui/events`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who").filter({ hasText: "operator" }).waitFor(WAIT);
  await page.locator("table tbody tr").first().waitFor(WAIT);
  seen.zone = await page.locator("#zone").textContent();
  await shot(page, "events");
  // A sender's markup is shown as text, never run.
  await page.getByText(markup, { exact: true }).waitFor(WAIT);
  if (await page.evaluate(() => window.__xss !== undefined)) throw new Error("the page ran a sender's markup");

  // The quick search, from the keyboard: "/" focuses it, Enter finds the event.
  await page.keyboard.press("/");
  await page.keyboard.type(dedupeKey);
  await page.keyboard.press("Enter");
  await page.waitForURL(`**/ui/events/${eventId}`, WAIT);
  await page.locator('tr.attempt[data-outcome="failed"]').first().waitFor(WAIT);
  seen.failedAttemptText = await page.locator('tr.attempt[data-outcome="failed"]').first().innerText();
  await shot(page, "event-failed");

  // Retry: a new attempt, delivered, appears without reloading.
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "Retry queued" }).waitFor(WAIT);
  await page.locator('tr.attempt[data-outcome="delivered"]').first().waitFor(WAIT);
  seen.attemptsAfterRetry = await page.locator("tr.attempt").count();
  await shot(page, "event-retried");

  // A shared link opens the same view after a reload.
  await page.reload();
  await page.locator('tr.attempt[data-outcome="delivered"]').first().waitFor(WAIT);

  // Bulk retry of the remaining dead letters, through its preview.
  await page.goto(`${base}/ui/events?status=dead_lettered`);
  await page.locator("table tbody tr").nth(bulkCount - 1).waitFor(WAIT);
  await page.getByText("Bulk retry of these events").click();
  await page.getByRole("button", { name: "Preview" }).click();
  const preview = page.getByRole("status").filter({ hasText: `${bulkCount} events, ${bulkCount} deliveries` });
  await preview.waitFor(WAIT);
  seen.preview = await preview.innerText();
  await shot(page, "bulk-retry");
  await page.getByRole("button", { name: `Retry ${bulkCount} deliveries` }).click();
  const queued = page.getByRole("status").filter({ hasText: `Queued ${bulkCount} of ${bulkCount}` });
  await queued.waitFor(WAIT);
  seen.bulk = await queued.innerText();

  // A test webhook, and its attempt.
  await page.locator('a[href="/ui/subscriptions"]').first().click();
  const row = page.locator(`tr[data-subscription="${subscription}"]`);
  await row.getByRole("button", { name: "Send test webhook" }).click();
  const sent = page.getByRole("status").filter({ hasText: "Test event sent" });
  await sent.waitFor(WAIT);
  const testLink = sent.getByRole("link");
  seen.testEvent = await testLink.textContent();
  await testLink.click();
  await page.waitForURL(`**/ui/events/${seen.testEvent}`, WAIT);
  // The event may not be indexed yet: reload until its delivered attempt shows.
  const delivered = page.locator('tr.attempt[data-outcome="delivered"]').first();
  for (let i = 0; ; i++) {
    try {
      await delivered.waitFor({ timeout: 1000 });
      break;
    } catch (e) {
      if (i >= 60) throw e;
      await page.reload();
    }
  }
  await shot(page, "test-webhook");

  // The registry from the page: add a subscription (its secret is shown once), then delete it.
  await page.locator('a[href="/ui/subscriptions"]').first().click();
  await page.getByLabel("Id", { exact: true }).fill("crm");
  await page.getByLabel("URL", { exact: true }).fill(newSubscriptionUrl);
  await page.getByRole("button", { name: "Save" }).click();
  const saved = page.getByRole("status").filter({ hasText: "Saved crm." });
  await saved.waitFor(WAIT);
  seen.newSecret = await saved.locator("code").textContent();
  await page.locator('tr[data-subscription="crm"]').waitFor(WAIT);
  await shot(page, "subscriptions");
  page.once("dialog", (d) => d.accept());
  await page.locator('tr[data-subscription="crm"]').getByRole("button", { name: "Delete" }).click();
  await page.getByRole("status").filter({ hasText: "Deleted crm." }).waitFor(WAIT);
  seen.crmRowsAfterDelete = await page.locator('tr[data-subscription="crm"]').count();

  await page.locator('a[href="/ui/health"]').first().click();
  await page.getByRole("heading", { name: "Subscriptions" }).waitFor(WAIT);
  seen.health = await page.locator("table").first().innerText();
  await shot(page, "health");

  await browser.close();
  if (errors.length) throw new Error(`the page logged errors: ${errors.join("; ")}`);
  seen.steps_ms = steps;
  console.log(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

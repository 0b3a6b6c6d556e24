// The storefront as people use it: Playwright drives Debian's Chromium (headless) against
// the real binary, which crates/sneakerstop/tests/storefront.rs starts with real PostgreSQL
// and Kafka and then runs this file with `node --test`. Every page visited is audited with
// axe-core (no serious or critical violation) and photographed for docs/storefront.md.
//
// The tests run in order and build on each other, as a marketplace's day does: the admin's
// product is what the seller lists and the shopper buys.
//
// Environment: BASE_URL (the marketplace), UNAVAILABLE_URL (a storefront whose API is
// gone), ADMIN_EMAIL and ADMIN_PASSWORD (an account with the admin role), CHROMIUM_BIN,
// SCREENSHOT_DIR (where page pictures go).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BASE = required("BASE_URL");
const UNAVAILABLE = required("UNAVAILABLE_URL");
const ADMIN = { email: required("ADMIN_EMAIL"), password: required("ADMIN_PASSWORD") };
const SHOTS = process.env.SCREENSHOT_DIR;
// How long anything that travels through events (a sale, a completed order) may take.
const DEADLINE_MS = 60_000;
const PASSWORD = "correct horse battery";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (crates/sneakerstop/tests/storefront.rs sets it)`);
  return value;
}

let browser;
// Anything the Content-Security-Policy refused, and any script error, on any page: both
// must stay empty (our pages need no inline script or style).
const refusedByPolicy = [];
const scriptErrors = [];
// What the tests share, in the order they make it.
const shared = {};

before(async () => {
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
});

/** A person at their own browser (own cookies), not signed in. */
async function person() {
  const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  page.on("console", (message) => {
    if (/Content[- ]Security[- ]Policy/i.test(message.text())) refusedByPolicy.push(message.text());
  });
  page.on("pageerror", (error) => scriptErrors.push(String(error)));
  return { context, page };
}

const unique = (what) => `${what}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** Signs up through the sign-up page; returns the email. */
async function signUp(page) {
  const email = `${unique("person")}@example.com`;
  await page.goto("/signup");
  await page.fill("#signup-email", email);
  await page.fill("#signup-password", PASSWORD);
  await page.click("button[type=submit] >> text=Create account");
  await page.waitForURL(/done=signed-up/);
  await page.locator("header").getByText(email).waitFor();
  return email;
}

async function signIn(page, email, password) {
  await page.goto("/signin");
  await page.fill("#signin-email", email);
  await page.fill("#signin-password", password);
  await page.click("main button[type=submit]");
  await page.waitForURL(/done=signed-in/);
}

/** No serious or critical accessibility violation on the page; its picture for the docs. */
async function audit(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(serious, [], `${name} (${page.url()}): accessibility violations`);
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Presses Tab until `selector` has the focus: proves it is reachable by keyboard. */
async function tabTo(page, selector, most = 150) {
  const target = page.locator(selector);
  await target.waitFor();
  for (let i = 0; i < most; i++) {
    await page.keyboard.press("Tab");
    if (await target.evaluate((element) => element === document.activeElement)) return;
  }
  throw new Error(`${selector} is not reachable with Tab`);
}

/** Reloads `path` until `check(page)` holds, or fails at the deadline. */
async function reloadUntil(page, path, what, check) {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    await page.goto(path);
    if (await check(page)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${DEADLINE_MS} ms (${page.url()})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const cell = (page, size, field) => page.locator(`#market tr[data-size="${size}"] [data-field="${field}"]`);

test("an admin creates a product and corrects it; a refused field says why next to it", async () => {
  const { page } = await person();
  await signIn(page, ADMIN.email, ADMIN.password);
  await page.goto("/admin/products/new");
  await audit(page, "admin-product-form");
  await page.fill("#product-styleCode", "x");
  await page.fill("#product-name", "Storefront Runner");
  await page.fill("#product-brand", "SneakerStop");
  await page.fill("#product-retailPrice", "180");
  await page.fill("#product-sizes", "9, 10, 11");
  const refused = page.waitForResponse((r) => r.request().method() === "POST");
  await page.click("main button[type=submit]");
  assert.equal((await refused).status(), 400);
  assert.match(await page.textContent("#product-styleCode-error"), /\S/);
  assert.equal(await page.getAttribute("#product-styleCode", "aria-invalid"), "true");
  assert.equal(await page.inputValue("#product-name"), "Storefront Runner", "what was typed is kept");

  const styleCode = `SS-${Date.now().toString(36).toUpperCase()}`;
  await page.fill("#product-styleCode", styleCode);
  await page.click("main button[type=submit]");
  await page.waitForURL(/\/products\/[0-9a-f-]{36}\?done=product-saved/);
  shared.product = new URL(page.url()).pathname.split("/")[2];
  shared.productName = "Storefront Runner";

  await page.goto("/admin/products");
  await audit(page, "admin-products");
  await page.goto(`/admin/products/${shared.product}`);
  await page.fill("#product-colorway", "Black/White");
  await page.click("main button[type=submit]");
  await page.waitForURL(/done=product-saved/);
  await page.locator("dd", { hasText: "Black/White" }).waitFor();
});

test("a seller lists a pair, edits it and withdraws it", async () => {
  const seller = await person();
  shared.seller = seller;
  const { page } = seller;
  await signUp(page);
  await page.goto("/sell");
  await audit(page, "sell");
  // Markup in what people type is shown as text, never run or rendered.
  const title = `Worn twice <script>window.injected = 1</script> & "box"`;
  await page.fill("#listing-title", title);
  await page.fill("#listing-price", "120");
  await page.fill("#listing-size", "10");
  await page.click("main button[type=submit]");
  await page.waitForURL(/\/listings\/[0-9a-f-]{36}\?done=listed/);
  const listing = new URL(page.url()).pathname.split("/")[2];
  assert.equal(await page.textContent("h1"), title);
  assert.equal(await page.evaluate(() => window.injected), undefined, "the title's script did not run");
  await audit(page, "listing");

  await page.goto("/account/listings");
  await page.click(`tr[data-listing="${listing}"] a:has-text("Edit")`);
  await audit(page, "edit-listing");
  await page.fill("#listing-price", "130");
  await page.click("main button[type=submit]");
  await page.waitForURL(new RegExp(`/listings/${listing}\\?done=listing-saved`));
  await page.locator(".price", { hasText: "$130.00" }).waitFor();

  await page.goto("/account/listings");
  await page.click(`tr[data-listing="${listing}"] button:has-text("Withdraw")`);
  await page.waitForURL(/status=withdrawn&done=withdrawn/);
  assert.equal((await page.textContent(`tr[data-listing="${listing}"] .status-withdrawn`)).trim(), "withdrawn");
  await audit(page, "my-listings");
});

test("a product page shows a new lowest ask placed from another browser without reloading", async () => {
  const shopper = await person();
  shared.shopper = shopper;
  const { page } = shopper;
  shared.shopperEmail = await signUp(page);
  await page.goto(`/products/${shared.product}`);
  await page.locator("#market-live", { hasText: "Live" }).waitFor();
  assert.equal((await cell(page, "9", "ask").textContent()).trim(), "—");
  assert.equal(await page.isDisabled('#market tr[data-size="9"] button[data-action="buy"]'), true);
  await page.evaluate(() => {
    window.stillTheSamePage = true;
  });

  // The seller, in another browser, asks $180 for a size 9.
  const seller = shared.seller.page;
  await seller.goto(`/products/${shared.product}`);
  await seller.selectOption("#ask-size", "9");
  await seller.fill("#ask-price", "180");
  await seller.click('form[aria-label="Place an ask"] button[type=submit]');
  await seller.waitForURL(/\/listings\/[0-9a-f-]{36}\?done=listed/);

  await cell(page, "9", "ask").filter({ hasText: "$180.00" }).waitFor();
  assert.equal(await page.evaluate(() => window.stillTheSamePage), true, "the page was not reloaded");
  assert.equal((await cell(page, "9", "asks").textContent()).trim(), "1");
  assert.equal(await page.isDisabled('#market tr[data-size="9"] button[data-action="buy"]'), false);
  await audit(page, "product");
});

test("a shopper buys now with the keyboard alone; a declined card is shown by its field; the order completes", async () => {
  const { page } = shared.shopper;
  // Finds the product from the home page's search, by keyboard.
  await page.goto("/");
  await tabTo(page, "#search-q");
  await page.keyboard.type(shared.productName);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\?q=Storefront/);
  await tabTo(page, `.cards a[href="/products/${shared.product}"]`);
  await page.keyboard.press("Enter");
  await page.waitForURL(new RegExp(`/products/${shared.product}$`));
  await tabTo(page, '#market tr[data-size="9"] button[data-action="buy"]');
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/account\/orders\/[0-9a-f-]{36}\?done=ordered/);
  const order = new URL(page.url()).pathname.split("/")[3];
  await page.getByText("reserved for you until").waitFor();
  assert.match(await page.textContent("#order-status"), /awaiting payment/);
  await audit(page, "order");

  await tabTo(page, "#pay-token");
  await page.keyboard.type("tok_chargeDeclined");
  const declined = page.waitForResponse((r) => r.request().method() === "POST");
  await page.keyboard.press("Enter");
  assert.equal((await declined).status(), 402);
  assert.match(await page.textContent("#pay-token-error"), /declined/i);

  await tabTo(page, "#pay-token");
  await page.keyboard.press("Control+A");
  await page.keyboard.type("tok_visa");
  await page.keyboard.press("Enter");
  await page.waitForURL(/done=paid/);
  await reloadUntil(page, `/account/orders/${order}`, "the order completing", async (p) =>
    /complete/.test(await p.textContent("#order-status")),
  );
  await page.goto("/account/orders");
  await page.locator(`a[href="/account/orders/${order}"]`).waitFor();
  assert.match(await page.textContent("td.status-complete"), /complete/);
  assert.equal(await page.locator("tbody td", { hasText: shared.productName }).count(), 1, "the pair's title");
  await audit(page, "orders");
});

test("a bidder bids, a seller sells now into the bid, and each sees the outcome", async () => {
  const bidder = await person();
  shared.bidder = bidder;
  const { page } = bidder;
  await signUp(page);
  await page.goto(`/products/${shared.product}`);

  // Refused by the market, the reason next to the field.
  await page.selectOption("#bid-size", "11");
  await page.fill("#bid-price", "10");
  await page.click('form[aria-label="Place a bid"] button[type=submit]');
  await page.locator("#bid-price-error").waitFor();
  assert.match(await page.textContent("#bid-price-error"), /25/);
  assert.equal(await page.getAttribute("#bid-price", "aria-invalid"), "true");

  // A bid needs a saved card: the refusal says so above the form.
  await page.fill("#bid-price", "150");
  await page.click('form[aria-label="Place a bid"] button[type=submit]');
  assert.match(await page.textContent("#bid-problem"), /payment method/i);

  await page.goto("/account/card");
  await page.fill("#card-paymentMethod", "pm_card_visa");
  await page.click("main button[type=submit]");
  await page.waitForURL(/done=card-saved/);
  assert.equal((await page.textContent("#saved-card")).trim(), "pm_card_visa");
  await audit(page, "card");

  await page.goto(`/products/${shared.product}`);
  await page.selectOption("#bid-size", "11");
  await page.fill("#bid-price", "150");
  await page.click('form[aria-label="Place a bid"] button[type=submit]');
  await page.waitForURL(/\/account\/bids\?done=bid-placed/);
  assert.match(await page.textContent("td.status-open"), /open/);
  assert.equal(await page.textContent(`td a[href="/products/${shared.product}"]`), shared.productName);

  // A shopper watches size 11's sales chart meanwhile, without reloading.
  const watcher = shared.shopper.page;
  await watcher.goto(`/products/${shared.product}?size=11`);
  await watcher.locator("#market-live", { hasText: "Live" }).waitFor();
  assert.match(await watcher.textContent("#sales-chart"), /No sales of size 11 yet/);
  await watcher.evaluate(() => {
    window.stillTheSamePage = true;
  });

  // The seller sees the bid and sells into it.
  const seller = shared.seller.page;
  await seller.goto(`/products/${shared.product}`);
  await cell(seller, "11", "bid").filter({ hasText: "$150.00" }).waitFor();
  await seller.click('#market tr[data-size="11"] button[data-action="sell"]');
  await seller.waitForURL(/\/listings\/[0-9a-f-]{36}\?done=listed/);
  const sold = new URL(seller.url()).pathname.split("/")[2];

  await reloadUntil(page, "/account/bids", "the bid filling", async (p) => (await p.locator("td.status-filled").count()) === 1);
  await audit(page, "bids");
  await watcher.locator("#sales-chart", { hasText: "One sale of size 11: $150.00" }).waitFor();
  assert.equal(await watcher.evaluate(() => window.stillTheSamePage), true, "the chart changed without a reload");
  await reloadUntil(seller, "/account/listings?status=sold", "the pair selling", async (p) =>
    (await p.locator(`tr[data-listing="${sold}"] .status-sold`).count()) === 1,
  );

  // A card that is refused when a bid matches: the bid says so, and why.
  await page.goto("/account/card");
  await page.fill("#card-paymentMethod", "pm_card_chargeDeclined");
  await page.click("main button[type=submit]");
  await page.waitForURL(/done=card-saved/);
  await page.goto(`/products/${shared.product}`);
  await page.selectOption("#bid-size", "10");
  await page.fill("#bid-price", "140");
  await page.click('form[aria-label="Place a bid"] button[type=submit]');
  await page.waitForURL(/\/account\/bids\?done=bid-placed/);
  await seller.goto(`/products/${shared.product}`);
  await cell(seller, "10", "bid").filter({ hasText: "$140.00" }).waitFor();
  await seller.click('#market tr[data-size="10"] button[data-action="sell"]');
  await seller.waitForURL(/\/listings\/[0-9a-f-]{36}\?done=listed/);
  await reloadUntil(page, "/account/bids", "the bid being declined", async (p) =>
    (await p.locator("td.status-declined").count()) === 1,
  );
  assert.match(await page.textContent("td.status-declined"), /declined — your saved card was refused/);
  await page.goto("/account/card");
  await page.fill("#card-paymentMethod", "pm_card_visa");
  await page.click("main button[type=submit]");
  await page.waitForURL(/done=card-saved/);
});

test("a form without a valid CSRF token is refused with 403, even with a valid session", async () => {
  const { context, page } = shared.bidder;
  const send = (form) => context.request.post("/account/card", { form, maxRedirects: 0 });
  assert.equal((await send({ paymentMethod: "pm_card_chargeDeclined" })).status(), 403, "no token");
  assert.equal((await send({ paymentMethod: "pm_card_chargeDeclined", _csrf: "0".repeat(64) })).status(), 403, "a wrong token");
  // A real token, but another browser's (the seller's page): bound to their cookie and session.
  await shared.seller.page.goto("/account/card");
  const theirs = await shared.seller.page.inputValue('input[name="_csrf"]');
  assert.equal((await send({ paymentMethod: "pm_card_chargeDeclined", _csrf: theirs })).status(), 403, "another's token");
  // Nothing changed; and the bidder's own form, with its token, still works.
  await page.goto("/account/card");
  assert.equal((await page.textContent("#saved-card")).trim(), "pm_card_visa");
  const own = await page.inputValue('input[name="_csrf"]');
  assert.equal((await send({ paymentMethod: "pm_card_visa", _csrf: own })).status(), 303);
});

test("a shopper changes their password, refused reasons shown, and signs out everywhere", async () => {
  const { page } = shared.shopper;
  await page.goto("/account");
  await page.fill("#password-currentPassword", PASSWORD);
  await page.fill("#password-newPassword", "short");
  await page.click('form[aria-label="Change your password"] button[type=submit]');
  await page.locator("#password-newPassword-error").waitFor();
  assert.equal(await page.getAttribute("#password-newPassword", "aria-invalid"), "true");

  await page.fill("#password-currentPassword", "not the password");
  await page.fill("#password-newPassword", "a new long password");
  await page.click('form[aria-label="Change your password"] button[type=submit]');
  await page.locator("#password-problem").waitFor();

  await page.fill("#password-currentPassword", PASSWORD);
  await page.fill("#password-newPassword", "a new long password");
  await page.click('form[aria-label="Change your password"] button[type=submit]');
  await page.waitForURL(/\/account\?done=password-changed/);

  await page.click('form[action="/signout/everywhere"] button');
  await page.waitForURL(/done=signed-out-everywhere/);
  await page.locator("header a", { hasText: "Sign in" }).waitFor();
  const away = await page.goto("/account/orders");
  assert.match(away.url(), /\/signin\?next=%2Faccount%2Forders/, "signed out: the account asks to sign in");
  await signIn(page, shared.shopperEmail, "a new long password");
});

test("the other pages pass the audit; unknown pages and an unreachable API get pages of their own", async () => {
  const visitor = await person();
  const { page } = visitor;
  await page.goto("/");
  await page.locator(".cards a", { hasText: shared.productName }).first().waitFor();
  await audit(page, "home");
  await page.fill("#search-q", "Storefront Runner");
  await page.click('form[role="search"] button');
  await page.waitForURL(/q=Storefront/);
  await page.locator(".cards a", { hasText: shared.productName }).first().waitFor();
  await audit(page, "search");
  await page.goto("/listings?status=sold");
  await audit(page, "listings");
  for (const [path, name] of [["/signin", "signin"], ["/signup", "signup"]]) {
    await page.goto(path);
    await audit(page, name);
  }
  const missing = await page.goto("/no/such/page");
  assert.equal(missing.status(), 404);
  assert.match(await page.textContent("h1"), /Not found/);
  await audit(page, "not-found");

  const shopper = shared.shopper.page;
  await shopper.goto("/account");
  await audit(shopper, "account");

  // The sales so far (size 9 bought now, size 11 sold into a bid) on the chart.
  await page.goto(`/products/${shared.product}`);
  assert.equal(await page.locator(".chart polyline").count(), 1, "two sales draw a line");
  assert.match(await page.textContent("#chart-title"), /The last 2 sales of every size/);
  await audit(page, "product-chart");
  await page.goto(`/products/${shared.product}?size=9`);
  assert.match(await page.textContent(".chart"), /One sale of size 9: \$180\.00/);

  const gone = await page.goto(`${UNAVAILABLE}/`);
  assert.equal(gone.status(), 503);
  assert.match(await page.textContent("h1"), /unavailable/i);
  await audit(page, "unavailable");

  assert.deepEqual(refusedByPolicy, [], "the Content-Security-Policy refused something our pages use");
  assert.deepEqual(scriptErrors, [], "a page's script failed");
});

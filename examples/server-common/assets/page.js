// What both pages share (`/` and `/admin`, served at `/assets/page.js` before each page's
// own script): formatting, elements made from text, the session in sessionStorage, the
// API client, and the log-in by phone and code. Data from the API is only ever set as
// text or as an attribute, never as markup.
"use strict";
var ReferralPage = (function () {
  var $ = function (id) { return document.getElementById(id); };

  // Minor units per major unit, as powers of ten: ISO 4217's minor-unit column for the
  // currencies where it is not 2 (codes with no minor unit, like XAU, count as 0); every
  // other code, listed or not, has 2 (see assets/README.md).
  var EXPONENTS = {
    BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0,
    UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
    XAG: 0, XAU: 0, XBA: 0, XBB: 0, XBC: 0, XBD: 0, XDR: 0, XPD: 0, XPT: 0, XSU: 0,
    XTS: 0, XUA: 0, XXX: 0,
    BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
    CLF: 4, UYW: 4
  };

  // An integer amount of minor units as a decimal in major units, by the currency's
  // exponent, with digit groups: 151400 RUB -> "1,514.00", 250 JPY -> "250",
  // 617 KWD -> "0.617", -500 RUB -> "−5.00". Digits only, no floating point.
  function formatMinor(minor, currency) {
    if (typeof minor !== "number" || !Number.isSafeInteger(minor)) { return "?"; }
    var exponent = Object.prototype.hasOwnProperty.call(EXPONENTS, currency)
      ? EXPONENTS[currency] : 2;
    var digits = String(Math.abs(minor));
    while (digits.length <= exponent) { digits = "0" + digits; }
    var whole = digits.slice(0, digits.length - exponent).replace(/\B(?=(\d{3})+$)/g, ",");
    var fraction = exponent ? "." + digits.slice(digits.length - exponent) : "";
    return (minor < 0 ? "\u2212" : "") + whole + fraction;
  }
  function formatMoney(minor, currency) { return formatMinor(minor, currency) + " " + currency; }

  // A date and time in the reader's time zone ("Nov 30, 2026, 9:18 PM"); "" for none.
  function formatDate(iso) {
    if (!iso) { return ""; }
    var date = new Date(iso);
    if (isNaN(date.getTime())) { return String(iso); }
    return date.toLocaleString("en", { dateStyle: "medium", timeStyle: "short" });
  }

  // An element with a class and text (text only: data never becomes markup).
  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  // Fills a table body with a row per currency: a `th` with the code, then a cell (of
  // class `cellClass`) for each of `parts` of the row, in major units (e.g. PROFILE's
  // `rewards`, with the parts pending, approved and paid).
  function currencyRows(body, rows, parts, cellClass) {
    body.textContent = "";
    rows.forEach(function (amounts) {
      var row = element("tr");
      var currency = element("th", null, amounts.currency);
      currency.setAttribute("scope", "row");
      row.appendChild(currency);
      parts.forEach(function (part) {
        row.appendChild(element("td", cellClass, formatMinor(amounts[part], amounts.currency)));
      });
      body.appendChild(row);
    });
  }

  function store(key, value) {
    try {
      if (value === null) { sessionStorage.removeItem(key); } else { sessionStorage.setItem(key, value); }
    } catch (e) { /* storage may be off: the page still works until reload */ }
  }
  function load(key) {
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
  }

  // The page's one `role="alert"` (#error) and its status line (#status).
  function showError(message) { $("error").textContent = message || ""; }
  function showStatus(message) { $("status").textContent = message || ""; }

  // A client of the API that sends the token kept under `tokenKey`.
  // `api(method, path, body)` resolves to {ok, status, data, retryAfter}; never rejects.
  function client(tokenKey) {
    return function api(method, path, body) {
      var headers = { "Accept": "application/json" };
      var token = load(tokenKey);
      if (token) { headers["Authorization"] = "Bearer " + token; }
      var init = { method: method, headers: headers, credentials: "same-origin" };
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      return fetch(path, init).then(function (response) {
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          return {
            ok: response.ok, status: response.status, data: data,
            retryAfter: response.headers.get("Retry-After")
          };
        });
      }, function () {
        return { ok: false, status: 0, data: null, retryAfter: null };
      });
    };
  }

  // What to tell the reader about a failed call: the server's message, and when to retry.
  function errorMessage(result) {
    var err = result.data && result.data.error;
    var message = err && typeof err.message === "string" ? err.message
      : result.status === 0 ? "Could not reach the server. Check your connection and try again."
      : "The server answered with status " + result.status + ".";
    if (result.status === 429 && result.retryAfter && /^\d+$/.test(result.retryAfter)) {
      message += " Try again in " + result.retryAfter + " s.";
    }
    return message;
  }

  // Disables a form's (or any container's) buttons while its request runs.
  function busy(container, on) {
    container.setAttribute("aria-busy", on ? "true" : "false");
    Array.prototype.forEach.call(container.querySelectorAll("button"), function (b) { b.disabled = on; });
  }

  // A list filled page by page from a keyset route ({items, next_cursor}): `open(path)`
  // shows a route from its first page (the route already shown: like `reload()`),
  // `reload()` reads the route again, keeping as many items as were shown, the `more`
  // button appends the next page, `clear()` empties the list. An answer overtaken by a
  // newer read or a clear() is dropped.
  //
  // `options`: `api` (from `client`), `box` (the element shown while the list has items
  // and marked aria-busy while it loads), `items` (where `render(item)`'s elements go: a
  // <ul>, or a table's <tbody>), `pageSize`, `more` (the "show more" button), `empty`
  // (shown while the list is empty; optional) and `failed(result)` (a call that failed).
  function pagedList(options) {
    var box = options.box, items = options.items, more = options.more, empty = options.empty;
    var path = null;
    var cursor = null;
    var generation = 0;
    function fetchPage(reset) {
      if (reset) { generation += 1; }
      var mine = generation;
      if (path === null) { return Promise.resolve(); }
      var limit = reset
        ? Math.min(500, Math.max(options.pageSize, items.children.length)) : options.pageSize;
      var url = path + (path.indexOf("?") < 0 ? "?" : "&") + "limit=" + limit
        + (!reset && cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      box.setAttribute("aria-busy", "true");
      more.disabled = true;
      return options.api("GET", url).then(function (result) {
        if (mine !== generation) { return; }
        box.setAttribute("aria-busy", "false");
        more.disabled = false;
        var page = result.data;
        if (!result.ok || !page || !Array.isArray(page.items)) { options.failed(result); return; }
        if (reset) { items.textContent = ""; }
        page.items.forEach(function (item) { items.appendChild(options.render(item)); });
        cursor = page.next_cursor || null;
        more.hidden = !cursor;
        box.hidden = items.children.length === 0;
        if (empty) { empty.hidden = items.children.length !== 0; }
      });
    }
    more.addEventListener("click", function () {
      showError("");
      fetchPage(false);
    });
    return {
      open: function (newPath) {
        if (newPath !== path) {
          path = newPath;
          cursor = null;
          items.textContent = "";
        }
        return fetchPage(true);
      },
      reload: function () { return fetchPage(true); },
      clear: function () {
        generation += 1;
        cursor = null;
        items.textContent = "";
        box.hidden = true;
        box.setAttribute("aria-busy", "false");
        if (empty) { empty.hidden = true; }
        more.hidden = true;
        more.disabled = false;
      }
    };
  }

  // The log-in by phone and code, on the hooks both pages share: #phone-form with
  // input #phone, #code-form with input #code and the buttons #resend and #change-phone,
  // #code-sent-to, and #dev-code in #dev-code-box (shown while the simulated outbox is on).
  //
  // `options`: `api` (from `client`), `phoneKey` (where the pending phone is kept),
  // `view(name)` (shows "phone" or "code"), `verified(answer)` (the answer of
  // /api/auth/verify, to keep the token and show the signed-in page) and `resume()` (a
  // token is kept from before). Returns `start()`, which shows where the reader left off.
  function login(options) {
    var api = options.api;
    var phoneKey = options.phoneKey;
    var view = options.view;
    var phoneForm = $("phone-form");
    var codeForm = $("code-form");
    var devBox = $("dev-code-box");
    var devCode = $("dev-code");

    function sentTo(phone) { $("code-sent-to").textContent = "We sent a code to " + phone + "."; }

    function showDevCode(phone) {
      devBox.hidden = true;
      devCode.textContent = "";
      return api("GET", "/api/dev/sms?phone=" + encodeURIComponent(phone)).then(function (result) {
        if (result.ok && result.data && typeof result.data.code === "string") {
          devCode.textContent = result.data.code;
          devBox.hidden = false;
        }
      });
    }

    function sendCode(phone, form) {
      showError("");
      showStatus("Sending the code…");
      busy(form, true);
      return api("POST", "/api/auth/code", { phone: phone }).then(function (result) {
        busy(form, false);
        if (!result.ok) {
          showStatus("");
          showError(errorMessage(result));
          return;
        }
        var to = (result.data && result.data.phone) || phone;
        store(phoneKey, to);
        sentTo(to);
        showStatus("Code sent.");
        view("code");
        $("code").value = "";
        $("code").focus();
        return showDevCode(to);
      });
    }

    phoneForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var phone = $("phone").value.trim();
      if (!phone) { showError("Enter your phone number."); $("phone").focus(); return; }
      sendCode(phone, phoneForm);
    });

    $("resend").addEventListener("click", function () {
      var phone = load(phoneKey);
      if (phone) { sendCode(phone, codeForm); } else { view("phone"); }
    });

    $("change-phone").addEventListener("click", function () {
      store(phoneKey, null);
      showError("");
      showStatus("");
      devBox.hidden = true;
      view("phone");
      $("phone").focus();
    });

    codeForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var code = $("code").value.trim();
      var phone = load(phoneKey);
      if (!phone) { view("phone"); return; }
      if (!code) { showError("Enter the code from the SMS."); $("code").focus(); return; }
      showError("");
      showStatus("");
      busy(codeForm, true);
      api("POST", "/api/auth/verify", { phone: phone, code: code }).then(function (result) {
        busy(codeForm, false);
        if (!result.ok || !result.data) { showError(errorMessage(result)); $("code").select(); return; }
        store(phoneKey, null);
        devBox.hidden = true;
        options.verified(result.data);
      });
    });

    return function start(signedIn) {
      if (signedIn) {
        options.resume();
      } else if (load(phoneKey)) {
        sentTo(load(phoneKey));
        view("code");
      } else {
        view("phone");
      }
    };
  }

  return {
    $: $, formatMinor: formatMinor, formatMoney: formatMoney, formatDate: formatDate,
    element: element, currencyRows: currencyRows, store: store, load: load, showError: showError, showStatus: showStatus,
    client: client, errorMessage: errorMessage, busy: busy, pagedList: pagedList, login: login
  };
})();

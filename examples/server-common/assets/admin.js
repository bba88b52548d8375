// The operators' page at `/admin` (admin.html): search, user detail, block, void,
// statistics, leaderboard and exports, on the helpers of page.js.
"use strict";
(function () {
  // Not the user page's keys: an operator may use both pages in one browser.
  var TOKEN_KEY = "referral.admin.access_token";
  var OPERATOR_KEY = "referral.admin.operator";
  var PHONE_KEY = "referral.admin.pending_phone";
  var P = ReferralPage;
  var $ = P.$, element = P.element, formatMoney = P.formatMoney,
    formatDate = P.formatDate, store = P.store, load = P.load, showError = P.showError,
    showStatus = P.showStatus, errorMessage = P.errorMessage, busy = P.busy;
  var api = P.client(TOKEN_KEY);

  var els = {
    logout: $("logout"), operator: $("operator"),
    phoneForm: $("phone-form"), codeForm: $("code-form"), console: $("console"),
    users: $("users"), noUsers: $("no-users"), moreUsers: $("more-users"),
    detail: $("user-detail"), blockForm: $("block-form"), unblock: $("unblock"),
    rewardsSection: $("rewards-section"), rewards: $("user-rewards"),
    noRewards: $("no-user-rewards"), moreRewards: $("more-user-rewards"),
    voidForm: $("void-form"), voidTarget: $("void-target"),
    statsRewards: $("stats-rewards"), chart: $("stats-chart"), chartSummary: $("chart-summary"),
    statsDays: $("stats-days"), leaderboard: $("leaderboard"), noLeaderboard: $("no-leaderboard"),
    leaderboardDays: $("leaderboard_days")
  };

  // A table's compact time: UTC, to the minute ("2026-11-30 21:18"), as the statistics'
  // days are UTC dates.
  function formatUtc(iso) {
    var date = new Date(iso);
    if (!iso || isNaN(date.getTime())) { return iso ? String(iso) : ""; }
    return date.toISOString().slice(0, 16).replace("T", " ");
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function formatBytes(n) {
    if (n < 1024) { return n + " bytes"; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + " KiB"; }
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function cell(text, className) { return element("td", className, text); }
  // A link-styled button showing `phone` that opens user `id`'s detail.
  function openButton(phone, id) {
    var open = element("button", "link", phone);
    open.type = "button";
    open.title = "Open " + phone;
    open.addEventListener("click", function () { openUser(id); });
    return open;
  }
  function svg(tag, attributes) {
    // The namespace of the page's own <svg> element (SVG's).
    var node = document.createElementNS(els.chart.namespaceURI, tag);
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, String(attributes[name]));
    });
    return node;
  }

  function operator() {
    try { return JSON.parse(load(OPERATOR_KEY) || "null"); } catch (e) { return null; }
  }

  // A failed admin call: its message in the alert. 401 (no valid token) and 403 (not an
  // operator, or blocked) on an admin route mean this token cannot run the console: back
  // to the log-in.
  function failed(result) {
    if (result.status === 401 || result.status === 403) { signOut(); }
    showError(errorMessage(result));
  }

  function view(name) {
    var signedIn = name === "console";
    els.phoneForm.hidden = name !== "phone";
    els.codeForm.hidden = name !== "code";
    els.console.hidden = !signedIn;
    els.logout.hidden = !signedIn;
    els.operator.hidden = !signedIn;
  }

  // ---- Users: search and detail ----

  var current = null; // the id of the user shown in the detail
  var detailGeneration = 0;

  function userRow(user) {
    var row = element("tr");
    row.setAttribute("data-user-id", String(user.id));
    var phone = element("td", "nowrap");
    phone.appendChild(openButton(user.phone, user.id));
    row.appendChild(phone);
    row.appendChild(cell(user.invite_code, "mono"));
    row.appendChild(cell(user.referral_count, "num"));
    var state = element("td");
    state.appendChild(user.blocked ? element("span", "badge blocked", "blocked")
                                   : element("span", "badge", "active"));
    row.appendChild(state);
    row.appendChild(cell(String(user.created_at || "").slice(0, 10), "nowrap"));
    if (user.id === current) { row.className = "selected"; }
    return row;
  }
  var userList = P.pagedList({
    api: api, box: els.users, items: els.users.tBodies[0], pageSize: 25,
    more: els.moreUsers, empty: els.noUsers, render: userRow, failed: failed
  });

  // What the search box holds, as the route's `q`: a phone loses its spaces, dashes, dots
  // and brackets (the route takes digits with an optional `+`); a code is sent as typed.
  function searchQuery(raw) {
    var q = raw.trim();
    if (/^[+\d\s().\-]+$/.test(q)) { q = q.replace(/[\s().\-]/g, ""); }
    return q;
  }

  function search() {
    var q = searchQuery($("q").value);
    return userList.open("/api/admin/users" + (q ? "?q=" + encodeURIComponent(q) : ""));
  }

  $("search-form").addEventListener("submit", function (event) {
    event.preventDefault();
    showError("");
    search();
  });

  function balancesTable(table, balances) {
    P.currencyRows(table.tBodies[0], balances, ["pending", "approved", "paid"], "num");
    table.hidden = balances.length === 0;
  }

  function renderDetail(detail) {
    var user = detail.user || {};
    current = user.id;
    $("detail-phone").textContent = user.phone || "";
    $("detail-id").textContent = user.id || "";
    $("detail-created").textContent = formatDate(user.created_at);
    $("detail-invite-code").textContent = user.invite_code || "";
    $("detail-activated").textContent = user.activated_invite_code || "none";

    var referrer = $("detail-referrer");
    referrer.textContent = "";
    if (detail.referrer) {
      var open = openButton(detail.referrer.phone, detail.referrer.id);
      open.id = "open-referrer";
      referrer.appendChild(open);
    } else {
      referrer.textContent = "none";
    }

    var blocked = $("detail-blocked");
    var me = operator();
    if (detail.blocked) {
      var by = me && detail.blocked.by === me.id ? "you" : detail.blocked.by;
      blocked.textContent = "Blocked " + formatDate(detail.blocked.at) + " by " + by
        + ": " + detail.blocked.reason;
      blocked.setAttribute("data-blocked", "true");
    } else {
      blocked.textContent = "Active (not blocked)";
      blocked.setAttribute("data-blocked", "false");
    }
    els.blockForm.hidden = !!detail.blocked;
    els.unblock.hidden = !detail.blocked;

    var count = user.referral_count || 0;
    var phones = Array.isArray(user.referrals) ? user.referrals : [];
    $("detail-referral-count").textContent = String(count)
      + (count > phones.length ? " (the first " + phones.length + " below)" : "");
    var list = $("detail-referrals");
    list.textContent = "";
    phones.forEach(function (phone) {
      var li = element("li");
      var find = element("button", "link", phone);
      find.type = "button";
      find.title = "Search " + phone;
      find.addEventListener("click", function () {
        $("q").value = phone;
        showError("");
        search();
      });
      li.appendChild(find);
      list.appendChild(li);
    });
    list.hidden = phones.length === 0;
    balancesTable($("detail-balances"), Array.isArray(user.rewards) ? user.rewards : []);
    els.detail.hidden = false;
    els.rewardsSection.hidden = false;
    Array.prototype.forEach.call(els.users.tBodies[0].rows, function (row) {
      row.className = row.getAttribute("data-user-id") === current ? "selected" : "";
    });
  }

  // Reads the user `id` and shows them with their rewards.
  function openUser(id) {
    showError("");
    detailGeneration += 1;
    var mine = detailGeneration;
    hideVoid();
    return api("GET", "/api/admin/users/" + encodeURIComponent(id)).then(function (result) {
      if (mine !== detailGeneration) { return; }
      if (!result.ok || !result.data) { failed(result); return; }
      var changed = current !== result.data.user.id;
      renderDetail(result.data);
      if (changed) {
        $("block_reason").value = "";
        rewardList.open("/api/admin/users/" + encodeURIComponent(id) + "/rewards");
        $("detail-title").focus();
      } else {
        rewardList.reload();
      }
    });
  }

  // Re-reads the detail of the shown user (after a change).
  function refreshDetail() {
    if (current === null) { return Promise.resolve(); }
    detailGeneration += 1;
    var mine = detailGeneration;
    return api("GET", "/api/admin/users/" + encodeURIComponent(current)).then(function (result) {
      if (mine !== detailGeneration) { return; }
      if (result.ok && result.data) { renderDetail(result.data); } else { failed(result); }
    });
  }

  els.blockForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var reason = $("block_reason").value.trim();
    if (!reason) { showError("Give a reason for blocking."); $("block_reason").focus(); return; }
    if (current === null) { return; }
    showError("");
    showStatus("");
    busy(els.blockForm, true);
    api("POST", "/api/admin/users/" + encodeURIComponent(current) + "/block", { reason: reason })
      .then(function (result) {
        busy(els.blockForm, false);
        if (!result.ok || !result.data) { failed(result); return; }
        $("block_reason").value = "";
        renderDetail(result.data);
        showStatus("Blocked " + result.data.user.phone + ".");
        userList.reload();
      });
  });

  els.unblock.addEventListener("click", function () {
    if (current === null) { return; }
    showError("");
    showStatus("");
    els.unblock.disabled = true;
    api("POST", "/api/admin/users/" + encodeURIComponent(current) + "/unblock", {})
      .then(function (result) {
        els.unblock.disabled = false;
        if (!result.ok || !result.data) { failed(result); return; }
        renderDetail(result.data);
        showStatus("Unblocked " + result.data.user.phone + ".");
        userList.reload();
      });
  });

  // ---- The user's rewards and voiding ----

  var KINDS = {
    referrer_fixed: "referral bonus",
    referrer_percent: "share of a purchase",
    welcome: "welcome gift",
    clawback: "refund correction"
  };
  var voiding = null; // the reward the void form is for

  function rewardRow(reward) {
    var row = element("tr");
    row.setAttribute("data-reward-id", String(reward.id));
    row.setAttribute("data-status", String(reward.status));
    row.setAttribute("data-kind", String(reward.kind));
    row.appendChild(cell(formatUtc(reward.created_at), "nowrap"));
    row.appendChild(cell(KINDS[reward.kind] || reward.kind));
    row.appendChild(cell(formatMoney(reward.amount, reward.currency), "num amount"));
    var status = element("td");
    status.appendChild(element("span", "badge " + String(reward.status), reward.status));
    row.appendChild(status);
    var from = element("td");
    if (reward.conversion_id) { from.appendChild(element("div", "mono", reward.conversion_id)); }
    if (reward.referral_phone) { from.appendChild(element("div", "nowrap", reward.referral_phone)); }
    row.appendChild(from);
    var action = element("td");
    // Only a pending or approved reward that is not a clawback can be voided.
    if ((reward.status === "pending" || reward.status === "approved") && reward.kind !== "clawback") {
      var button = element("button", "secondary small", "Void");
      button.type = "button";
      button.title = "Void this reward";
      button.addEventListener("click", function () { showVoid(reward); });
      action.appendChild(button);
    }
    row.appendChild(action);
    return row;
  }
  var rewardList = P.pagedList({
    api: api, box: els.rewards, items: els.rewards.tBodies[0], pageSize: 20,
    more: els.moreRewards, empty: els.noRewards, render: rewardRow, failed: failed
  });

  function showVoid(reward) {
    voiding = reward;
    els.voidTarget.textContent = "Void the " + (KINDS[reward.kind] || reward.kind) + " of "
      + formatMoney(reward.amount, reward.currency) + " (" + reward.status + ", "
      + formatDate(reward.created_at) + ")? The owner's balance loses it.";
    $("void_reason").value = "";
    els.voidForm.hidden = false;
    $("void_reason").focus();
  }
  function hideVoid() {
    voiding = null;
    els.voidForm.hidden = true;
  }
  $("void-cancel").addEventListener("click", hideVoid);

  els.voidForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var reason = $("void_reason").value.trim();
    if (!reason) { showError("Give a reason for voiding."); $("void_reason").focus(); return; }
    if (voiding === null) { return; }
    showError("");
    showStatus("");
    busy(els.voidForm, true);
    api("POST", "/api/admin/rewards/" + encodeURIComponent(voiding.id) + "/void", { reason: reason })
      .then(function (result) {
        busy(els.voidForm, false);
        if (!result.ok || !result.data) { failed(result); return; }
        hideVoid();
        showStatus("Voided the reward of " + formatMoney(result.data.amount, result.data.currency) + ".");
        refreshDetail();
        rewardList.reload();
        loadStats();
        loadLeaderboard();
      });
  });

  // ---- Statistics ----

  var SERIES = ["users", "activations", "conversions"];

  // Totals as text, reward totals as a table, the days as a grouped bar chart (one group
  // of three bars a day, today last) and as a table.
  function renderStats(stats) {
    var totals = stats.totals || {};
    $("total-users").textContent = String(totals.users);
    $("total-activations").textContent = String(totals.activations);
    $("total-conversions").textContent = String(totals.conversions);
    var rewards = Array.isArray(totals.rewards) ? totals.rewards : [];
    P.currencyRows(els.statsRewards.tBodies[0], rewards, ["pending", "approved", "paid", "voided"], "num");
    els.statsRewards.hidden = rewards.length === 0;

    var days = Array.isArray(stats.days) ? stats.days : [];
    drawChart(days);
    var dayBody = els.statsDays.tBodies[0];
    dayBody.textContent = "";
    days.slice().reverse().forEach(function (day) {
      var row = element("tr");
      row.setAttribute("data-date", String(day.date));
      row.appendChild(cell(day.date, "nowrap"));
      SERIES.forEach(function (s) { row.appendChild(cell(day[s], "num")); });
      dayBody.appendChild(row);
    });
    var sums = SERIES.map(function (s) {
      return days.reduce(function (n, day) { return n + (Number(day[s]) || 0); }, 0);
    });
    els.chartSummary.textContent = "In the last " + plural(days.length, "day", "days") + ": "
      + plural(sums[0], "new user", "new users") + ", "
      + plural(sums[1], "activation", "activations") + ", "
      + plural(sums[2], "conversion", "conversions") + ".";
  }

  function drawChart(days) {
    var chart = els.chart;
    chart.textContent = "";
    var W = 640, H = 170, left = 34, right = 6, top = 8, bottom = 22;
    var plotW = W - left - right, plotH = H - top - bottom;
    var max = 1;
    days.forEach(function (day) {
      SERIES.forEach(function (s) { max = Math.max(max, Number(day[s]) || 0); });
    });
    // The axis: a baseline and the top value.
    chart.appendChild(svg("line", { "class": "axis", x1: left, y1: top + plotH, x2: W - right, y2: top + plotH }));
    chart.appendChild(svg("line", { "class": "axis", x1: left, y1: top, x2: left, y2: top + plotH }));
    var topLabel = svg("text", { x: left - 4, y: top + 9, "text-anchor": "end" });
    topLabel.textContent = String(max);
    chart.appendChild(topLabel);
    var zero = svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end" });
    zero.textContent = "0";
    chart.appendChild(zero);
    if (days.length === 0) { return; }
    var slot = plotW / days.length;
    var barW = Math.max(1, (slot - 2) / SERIES.length);
    days.forEach(function (day, i) {
      var group = svg("g", { "data-date": day.date });
      SERIES.forEach(function (s, k) {
        var value = Number(day[s]) || 0;
        var h = Math.round(value / max * plotH * 10) / 10;
        var bar = svg("rect", {
          "class": "s-" + s, "data-series": s, "data-value": value,
          x: (left + i * slot + 1 + k * barW).toFixed(2), y: (top + plotH - h).toFixed(2),
          width: barW.toFixed(2), height: h.toFixed(2)
        });
        var title = svg("title");
        title.textContent = day.date + ": " + value + " " + s;
        bar.appendChild(title);
        group.appendChild(bar);
      });
      chart.appendChild(group);
      // A date under the first, the middle and the last day.
      if (i === 0 || i === days.length - 1 || i === Math.floor(days.length / 2)) {
        var label = svg("text", {
          x: (left + i * slot + slot / 2).toFixed(2), y: H - 6,
          "text-anchor": i === 0 ? "start" : i === days.length - 1 ? "end" : "middle"
        });
        label.textContent = String(day.date).slice(5);
        chart.appendChild(label);
      }
    });
  }

  var statsGeneration = 0;
  function loadStats() {
    statsGeneration += 1;
    var mine = statsGeneration;
    return api("GET", "/api/admin/stats?days=30").then(function (result) {
      if (mine !== statsGeneration) { return; }
      if (result.ok && result.data) { renderStats(result.data); } else { failed(result); }
    });
  }

  // ---- Leaderboard ----

  function renderLeaderboard(board) {
    var items = Array.isArray(board.items) ? board.items : [];
    var body = els.leaderboard.tBodies[0];
    body.textContent = "";
    items.forEach(function (item, i) {
      var row = element("tr");
      row.setAttribute("data-user-id", String(item.user_id));
      row.appendChild(cell(i + 1, "num"));
      var who = element("td", "nowrap");
      who.appendChild(openButton(item.phone, item.user_id));
      row.appendChild(who);
      row.appendChild(cell(item.referrals, "num"));
      var rewarded = Array.isArray(item.rewarded) ? item.rewarded : [];
      row.appendChild(cell(rewarded.length ? rewarded.map(function (m) {
        return formatMoney(m.amount, m.currency);
      }).join(", ") : "none"));
      body.appendChild(row);
    });
    els.leaderboard.hidden = items.length === 0;
    els.noLeaderboard.hidden = items.length !== 0;
  }

  var boardGeneration = 0;
  function loadLeaderboard() {
    boardGeneration += 1;
    var mine = boardGeneration;
    var days = els.leaderboardDays.value;
    return api("GET", "/api/admin/leaderboard?limit=10" + (days ? "&days=" + encodeURIComponent(days) : ""))
      .then(function (result) {
        if (mine !== boardGeneration) { return; }
        if (result.ok && result.data) { renderLeaderboard(result.data); } else { failed(result); }
      });
  }
  els.leaderboardDays.addEventListener("change", function () {
    showError("");
    loadLeaderboard();
  });

  // ---- Exports: fetched with the token (never in a URL), saved from a Blob URL ----

  function download(link) {
    var name = link.getAttribute("data-file");
    showError("");
    showStatus("Fetching " + name + "…");
    link.setAttribute("aria-busy", "true");
    var done = function () { link.setAttribute("aria-busy", "false"); };
    var cut = function () {
      done();
      showStatus("");
      showError("The export " + name + " was cut off or could not be fetched; try again.");
    };
    fetch(link.getAttribute("href"), {
      headers: { "Accept": "text/csv", "Authorization": "Bearer " + (load(TOKEN_KEY) || "") },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) {
          var data = null;
          try { data = JSON.parse(text); } catch (e) { data = null; }
          done();
          showStatus("");
          failed({ ok: false, status: response.status, data: data, retryAfter: null });
        });
      }
      // A body cut short (the store failed mid-way) rejects here: nothing is saved.
      return response.blob().then(function (blob) {
        done();
        var url = URL.createObjectURL(blob);
        var save = document.createElement("a");
        save.href = url;
        save.download = name;
        save.hidden = true;
        document.body.appendChild(save);
        save.click();
        save.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
        showStatus("Saved " + name + " (" + formatBytes(blob.size) + ").");
      }, cut);
    }, cut);
  }
  [$("export-referrals"), $("export-rewards")].forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      download(link);
    });
  });

  // ---- Log-in and the session ----

  function enter() {
    var me = operator();
    els.operator.textContent = me && me.phone ? "Operator " + me.phone : "";
    view("console");
    loadStats();
    loadLeaderboard();
    search();
  }

  function signOut(message) {
    store(TOKEN_KEY, null);
    store(OPERATOR_KEY, null);
    // Nothing of the last session stays in the page.
    current = null;
    detailGeneration += 1;
    statsGeneration += 1;
    boardGeneration += 1;
    userList.clear();
    rewardList.clear();
    hideVoid();
    els.detail.hidden = true;
    els.rewardsSection.hidden = true;
    els.leaderboard.tBodies[0].textContent = "";
    els.statsRewards.tBodies[0].textContent = "";
    els.statsDays.tBodies[0].textContent = "";
    els.chart.textContent = "";
    view("phone");
    showStatus(message || "");
  }

  var start = P.login({
    api: api, phoneKey: PHONE_KEY, view: view,
    verified: function (answer) {
      store(TOKEN_KEY, answer.access_token);
      store(OPERATOR_KEY, JSON.stringify({ id: answer.profile.id, phone: answer.profile.phone }));
      enter();
    },
    resume: enter
  });

  $("refresh").addEventListener("click", function () {
    showError("");
    loadStats();
    loadLeaderboard();
    userList.reload();
    refreshDetail().then(function () {
      if (current !== null) { rewardList.reload(); }
    });
  });

  els.logout.addEventListener("click", function () {
    showError("");
    signOut("You are logged out.");
    $("phone").focus();
  });

  // Start: a kept token opens the console, a pending phone the code form.
  start(!!load(TOKEN_KEY));
})();

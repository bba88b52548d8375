// The web page at `/` (index.html): log-in, profile, referrals, rewards and the invite
// form, on the helpers of page.js.
"use strict";
(function () {
  var TOKEN_KEY = "referral.access_token";
  var PHONE_KEY = "referral.pending_phone";
  var P = ReferralPage;
  var $ = P.$, element = P.element, formatMoney = P.formatMoney,
    formatDate = P.formatDate, store = P.store, load = P.load, showError = P.showError,
    showStatus = P.showStatus, errorMessage = P.errorMessage, busy = P.busy;
  var api = P.client(TOKEN_KEY);

  var els = {
    logout: $("logout"), phoneForm: $("phone-form"), codeForm: $("code-form"),
    inviteForm: $("invite-form"), profile: $("profile"),
    profilePhone: $("profile-phone"), inviteCode: $("invite-code"),
    activated: $("activated-invite-code"), noActivated: $("no-activated"),
    count: $("referral-count"), referrals: $("referrals"), noReferrals: $("no-referrals"),
    moreReferrals: $("more-referrals"), rewardsSection: $("rewards-section"),
    balancesBox: $("balances-box"), balances: $("reward-balances"),
    rewards: $("rewards"), noRewards: $("no-rewards"), moreRewards: $("more-rewards")
  };

  function view(name) {
    var signedIn = name === "profile";
    els.phoneForm.hidden = name !== "phone";
    els.codeForm.hidden = name !== "code";
    els.profile.hidden = !signedIn;
    els.rewardsSection.hidden = !signedIn;
    els.logout.hidden = !signedIn;
    if (!signedIn) { els.inviteForm.hidden = true; }
  }

  // One referral: the phone, and a "converted" badge once the person has had a
  // qualifying conversion.
  function referralItem(item) {
    var li = element("li");
    li.setAttribute("data-converted", item.converted === true ? "true" : "false");
    li.appendChild(element("span", "phone", item.phone));
    if (item.converted === true) {
      li.appendChild(document.createTextNode(" "));
      li.appendChild(element("span", "badge", "converted"));
    }
    return li;
  }

  var KINDS = {
    referrer_fixed: "Referral bonus",
    referrer_percent: "Share of a purchase",
    welcome: "Welcome gift",
    clawback: "Refund correction"
  };
  var STATUSES = { pending: "Pending", approved: "Approved", paid: "Paid", voided: "Voided" };

  // One reward: what it is and its amount, then its status and where it came from.
  function rewardItem(reward) {
    var li = element("li");
    li.setAttribute("data-status", String(reward.status));
    li.setAttribute("data-kind", String(reward.kind));
    var head = element("div", "reward-head");
    head.appendChild(element("span", "reward-kind", KINDS[reward.kind] || String(reward.kind)));
    head.appendChild(element("span", "reward-amount", formatMoney(reward.amount, reward.currency)));
    li.appendChild(head);
    var details = [STATUSES[reward.status] || String(reward.status)];
    if (reward.referral_phone) {
      details.push((reward.kind === "welcome" ? "invited by " : "from ") + reward.referral_phone);
    }
    if (reward.conversion_id) { details.push("conversion " + reward.conversion_id); }
    details.push(reward.status === "paid" && reward.paid_at
      ? "paid " + formatDate(reward.paid_at) : formatDate(reward.created_at));
    // The host's payout reference, so the user can match it with their statement
    // (text, like everything else here).
    if (reward.payout_ref) { details.push("payout ref " + String(reward.payout_ref)); }
    li.appendChild(element("div", "reward-details", details.join(" · ")));
    return li;
  }

  // A failed call: its message in the alert; a 401 (the token has expired or is refused)
  // also logs out.
  function failed(result) {
    if (result.status === 401) { signOut(); }
    showError(errorMessage(result));
  }

  var referralList = P.pagedList({
    api: api, box: els.referrals, items: els.referrals, pageSize: 100,
    more: els.moreReferrals, empty: null, render: referralItem, failed: failed
  });
  var rewardList = P.pagedList({
    api: api, box: els.rewards, items: els.rewards, pageSize: 10,
    more: els.moreRewards, empty: els.noRewards, render: rewardItem, failed: failed
  });

  // PROFILE's balances: one row per currency, amounts in major units.
  function renderBalances(balances) {
    P.currencyRows(els.balances.tBodies[0], balances, ["pending", "approved", "paid"], null);
    els.balancesBox.hidden = balances.length === 0;
  }

  function renderProfile(profile) {
    els.profilePhone.textContent = profile.phone;
    els.inviteCode.textContent = profile.invite_code;
    els.activated.textContent = profile.activated_invite_code || "";
    els.noActivated.hidden = !!profile.activated_invite_code;
    var total = profile.referral_count || 0;
    els.count.textContent = String(total);
    els.noReferrals.hidden = total !== 0;
    renderBalances(Array.isArray(profile.rewards) ? profile.rewards : []);
    view("profile");
    // Only a user who has not activated a code yet can activate one.
    els.inviteForm.hidden = !!profile.activated_invite_code;
    // The referrals (with `converted`) and the rewards come page by page.
    referralList.open("/api/profile/referrals");
    rewardList.open("/api/profile/rewards");
  }

  function signOut(message) {
    store(TOKEN_KEY, null);
    // Nothing of the last user stays in the page.
    referralList.clear();
    rewardList.clear();
    renderBalances([]);
    view("phone");
    showStatus(message || "");
  }

  function refreshProfile() {
    return api("GET", "/api/profile").then(function (result) {
      if (result.ok && result.data) { renderProfile(result.data); } else { failed(result); }
    });
  }

  var start = P.login({
    api: api, phoneKey: PHONE_KEY, view: view,
    verified: function (answer) {
      store(TOKEN_KEY, answer.access_token);
      showStatus(answer.new_user ? "Welcome! Your account is ready." : "Welcome back.");
      renderProfile(answer.profile);
      $("profile-title").focus();
    },
    resume: refreshProfile
  });

  els.inviteForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var code = $("invite_code").value.trim();
    if (!code) { showError("Enter an invite code."); $("invite_code").focus(); return; }
    showError("");
    showStatus("");
    busy(els.inviteForm, true);
    api("POST", "/api/profile/invite", { invite_code: code }).then(function (result) {
      busy(els.inviteForm, false);
      if (result.ok && result.data) {
        $("invite_code").value = "";
        showStatus("Invite code " + result.data.activated_invite_code + " activated.");
        renderProfile(result.data);
      } else {
        failed(result);
      }
    });
  });

  $("refresh").addEventListener("click", function () {
    showError("");
    refreshProfile();
  });

  els.logout.addEventListener("click", function () {
    showError("");
    signOut("You are logged out.");
    $("phone").focus();
  });

  // Keep the referrals fresh while the page is open and visible.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && load(TOKEN_KEY)) { refreshProfile(); }
  });
  setInterval(function () {
    if (document.visibilityState === "visible" && load(TOKEN_KEY) && !els.profile.hidden) {
      refreshProfile();
    }
  }, 30000);

  // Start: a kept token shows the profile, a pending phone the code form.
  start(!!load(TOKEN_KEY));
})();

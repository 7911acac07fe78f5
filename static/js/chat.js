// The only JavaScript of our own: small hooks around htmx's ws extension, local time.
// Everything on screen is HTML the server renders; this file only tunes the socket.
(function () {
  "use strict";

  // 1. Reconnect from the page's cursor: the server then sends exactly what the page
  //    lacks. The cursor (#chat-cursor) is the room's sequence number up to which the
  //    page has everything; the server sets it, and it moves on here only over messages
  //    that arrived without a gap (each has data-seq). What arrived past a gap (the
  //    sender's own message shown while the live stream was down, say) is listed in
  //    ?have= so that the catch-up fills the gap without sending it twice.
  htmx.createWebSocket = function (url) {
    const position = cursor();
    url = url.replace(/([?&]after=)\d*/, "$1" + position.after);
    if (position.have.length) url += "&have=" + position.have.join(",");
    const socket = new WebSocket(url);
    socket.binaryType = htmx.config.wsBinaryType;
    return socket;
  };

  function cursor() {
    const marker = document.getElementById("chat-cursor");
    let after = marker ? Number(marker.dataset.seq) : 0;
    const have = new Set();
    document.querySelectorAll("#chat-log [data-seq]").forEach(function (el) {
      const seq = Number(el.dataset.seq);
      if (seq > after) have.add(seq);
    });
    while (have.delete(after + 1)) after++;
    return { after: after, have: Array.from(have).sort(function (a, b) { return a - b; }).slice(0, 500) };
  }

  // 2. Retry sooner than the default (up to 64 s): full jitter, capped at 5 s.
  htmx.config.wsReconnectDelay = function (retry) {
    return Math.random() * Math.min(500 * 2 ** retry, 5000);
  };

  // 3. Socket state on <body data-socket="open|reconnecting|closed">, for the CSS that
  //    shows "Reconnecting…". htmx retries only after these close codes.
  const RETRIED = [1006, 1011, 1012, 1013];
  document.addEventListener("htmx:wsOpen", function () {
    document.body.dataset.socket = "open";
  });
  document.addEventListener("htmx:wsClose", function (event) {
    const code = event.detail.event.code;
    document.body.dataset.socket = RETRIED.includes(code) ? "reconnecting" : "closed";
  });

  // 4. Local time for pushed messages. A push is rendered once for everyone, in UTC
  //    (<time datetime> and data-day); here its time is shown in the browser's zone, and
  //    a copy of the page's #day-divider-template goes before it when its local day is
  //    not that of the message before it. Room and private messages alike
  //    (.message--private carries data-day too). The page's own render is already local.
  const localDay = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit" });
  const localTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const localDate = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  const localFull = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

  function dayOf(message) {
    const time = message.querySelector("time[datetime]");
    return time ? localDay.format(new Date(time.getAttribute("datetime"))) : message.dataset.day;
  }

  function localise(message) {
    const time = message.querySelector("time[datetime]");
    if (!time) return;
    const when = new Date(time.getAttribute("datetime"));
    time.textContent = localTime.format(when);
    time.title = localFull.format(when);
    const messages = Array.from(document.querySelectorAll("#chat-log .message[data-day]"));
    const before = messages[messages.indexOf(message) - 1];
    const template = document.getElementById("day-divider-template");
    if (template && (!before || dayOf(before) !== dayOf(message))) {
      const divider = template.content.firstElementChild.cloneNode(true);
      if (dayOf(message) !== localDay.format(new Date())) {
        // Not today (a catch-up after a long night): the date itself.
        const label = localDate.format(new Date(message.querySelector("time").getAttribute("datetime")));
        divider.setAttribute("aria-label", label);
        divider.firstElementChild.textContent = label;
      }
      message.before(divider);
    }
  }

  const live = document.getElementById("chat-live");
  if (live) {
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        change.addedNodes.forEach(function (node) {
          if (node.nodeType === 1 && node.matches(".message[data-day]")) localise(node);
        });
      });
    }).observe(live, { childList: true });
  }

  // 5. The settings page, before a first choice: preselect the browser's time zone.
  const zone = document.querySelector("form[data-prefill-time-zone] select[name=time_zone]");
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && Array.from(zone.options).some(function (o) { return o.value === browserZone; })) {
    zone.value = browserZone;
  }
})();

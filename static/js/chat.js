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

  // The cursor moves on as changes (edits, deletions, reactions) arrive: each push of one
  // leaves its sequence number in #chat-changes (room.html#message-change), kept only
  // until the cursor passes it.
  function advance() {
    const marker = document.getElementById("chat-cursor");
    if (!marker) return;
    const position = cursor();
    marker.dataset.seq = position.after;
    document.querySelectorAll("#chat-changes [data-seq]").forEach(function (el) {
      if (Number(el.dataset.seq) <= position.after) el.remove();
    });
  }
  const changes = document.getElementById("chat-changes");
  if (changes) new MutationObserver(advance).observe(changes, { childList: true });

  // A change pushed late (two edits published out of order) never replaces a newer one.
  // (Only a replacement of the message by its own newer self: a catch-up inserts earlier
  // messages *before* a message, and those are older than it by nature.)
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    const target = event.detail.target;
    const incoming = event.detail.fragment && event.detail.fragment.firstElementChild;
    if (target.dataset.change && incoming && incoming.id === target.id &&
        Number(incoming.dataset.change) < Number(target.dataset.change)) {
      event.detail.shouldSwap = false;
    }
  });

  // A pushed element marked data-oob-optional updates something a page may not show (a
  // message scrolled out of its history, say): dropped when its target is not there,
  // instead of htmx's "no target" error.
  htmx.defineExtension("oob-optional", {
    transformResponse: function (text) {
      if (text.indexOf("data-oob-optional") < 0) return text;
      const template = document.createElement("template");
      template.innerHTML = text;
      Array.from(template.content.children).forEach(function (el) {
        if (!el.hasAttribute("data-oob-optional")) return;
        const value = el.getAttribute("hx-swap-oob") || "true";
        const colon = value.indexOf(":");
        const selector = colon > 0 ? value.slice(colon + 1) : "#" + CSS.escape(el.id);
        if (!document.querySelector(selector)) el.remove();
      });
      return template.innerHTML;
    }
  });

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
    const previous = message.previousElementSibling;
    if (previous && previous.matches(".day-divider")) return; // (a changed message, in place)
    const messages = Array.from((message.closest("[role=log]") || document).querySelectorAll(".message[data-day]"));
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

  // Pushed messages arrive in #chat-live (new ones) or anywhere in the log (changed ones,
  // in place), or in a conversation page's log (#pm-log: private messages); a push is
  // rendered once for everyone, without a viewer, and carries data-pushed
  // (room.html#message, #private-message). Whether the viewer's own reaction is among its
  // reactions is per viewer: a page render sets aria-pressed, a push leaves it to this.
  const live = document.getElementById("chat-live");
  const viewer = document.body.dataset.viewer;
  function arrived(message) {
    localise(message);
    message.querySelectorAll(".reaction:not([aria-pressed])").forEach(function (button) {
      button.setAttribute("aria-pressed", String((button.dataset.by || "").split(" ").includes(viewer)));
    });
    message.removeAttribute("data-pushed");
  }
  const log = document.getElementById("chat-log") || document.getElementById("pm-log");
  if (log) {
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        mutation.addedNodes.forEach(function (node) {
          if (node.nodeType !== 1 || !node.matches(".message[data-day]")) return;
          if (node.hasAttribute("data-pushed") || node.parentElement === live) arrived(node);
        });
      });
    }).observe(log, { childList: true, subtree: true });
  }

  // 5. The settings page, before a first choice: preselect the browser's time zone.
  const zone = document.querySelector("form[data-prefill-time-zone] select[name=time_zone]");
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && Array.from(zone.options).some(function (o) { return o.value === browserZone; })) {
    zone.value = browserZone;
  }

  // 6. The composers are textareas (data-enter-sends): Enter sends, Shift+Enter adds a
  //    line. While an input method is composing (isComposing; keyCode 229 is the same
  //    for the Enter that ends a composition in some browsers), Enter is the IME's.
  //    Without JavaScript, Enter adds a line and the Send button posts.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    const field = event.target;
    if (!(field instanceof HTMLTextAreaElement) || !field.hasAttribute("data-enter-sends")) return;
    if (event.altKey || event.ctrlKey || event.metaKey || !field.form) return;
    event.preventDefault();
    field.form.requestSubmit();
  });

  // 7. Escape closes an open drawer (the room page's <details data-drawer>: rooms, people,
  //    shown as drawers on narrow screens) and gives the focus back to its toggle.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    const drawer = document.querySelector("details[data-drawer][open]");
    const toggle = drawer && drawer.querySelector("summary");
    if (!toggle || !toggle.getClientRects().length) return; // (wide screens: no drawers)
    drawer.open = false;
    toggle.focus();
  });

  // 8. Unread counts: the one place where per-viewer arithmetic happens. A page that
  //    lists rooms (the room list, a room page's sidebar) is sent, over its socket, each
  //    tick's activity in those rooms: one fragment rendered for every viewer
  //    (room.html#room-activity: the room, each author's count, who they mention),
  //    dropped into #room-activity. Here it becomes this viewer's counts on the room's
  //    entry ([data-room][data-unread]): data-count more unread if they follow the room
  //    (data-following: they opened it) and the author is not them, one more mention
  //    for each time data-mentions names them. The title's total moves by what counts
  //    loudly at the room's level (data-level), as rooms/attention.py loud_count sums it:
  //    everything, the unread; mentions (or a room never opened), the mentions;
  //    nothing, none. A #room-read push (the viewer read the room: its page, or its
  //    socket) zeroes the entry. The title counts every room, but only the listed ones
  //    move live (the others' activity does not reach the page): a reload counts them.
  const activity = document.getElementById("room-activity");
  function loud(entry) {
    const level = entry.dataset.level;
    if (level === "everything" && entry.hasAttribute("data-following")) return Number(entry.dataset.unread) || 0;
    if (level === "mentions") return Number(entry.dataset.mentions) || 0;
    return 0;
  }
  function showCounts(entry, unread, mentions) {
    entry.dataset.unread = unread;
    entry.dataset.mentions = mentions;
    const unreadNumber = entry.querySelector(".unread-count .count-number");
    const mentionNumber = entry.querySelector(".mention-count .count-number");
    if (unreadNumber) unreadNumber.textContent = unread;
    if (mentionNumber) mentionNumber.textContent = mentions;
  }
  function retitle(delta) {
    if (!delta || !activity.hasAttribute("data-unread-total")) return;
    const total = Math.max(0, (Number(activity.dataset.unreadTotal) || 0) + delta);
    activity.dataset.unreadTotal = total;
    document.title = (total ? "(" + total + ") " : "") + document.title.replace(/^\(\d+\) /, "");
  }
  function count(push) {
    const entries = document.querySelectorAll('[data-room="' + CSS.escape(push.dataset.room) + '"][data-unread]');
    if (!entries.length) return;
    const before = loud(entries[0]);
    const read = push.hasAttribute("data-room-read");
    if (!read && push.dataset.author === viewer) return;
    // (A push carries an author's messages of one tick: data-count of them, and a name
    // in data-mentions for each time one of them mentions that person.)
    const messages = push.dataset.count === undefined ? 1 : Number(push.dataset.count) || 0;
    const mentioned = (push.dataset.mentions || "").split(" ").filter(function (name) {
      return name === viewer;
    }).length;
    entries.forEach(function (entry) {
      if (read) {
        if (!entry.hasAttribute("data-following")) {
          entry.setAttribute("data-following", ""); // (a first read: the default level)
          entry.dataset.level = "everything";
        }
        showCounts(entry, 0, 0);
        return;
      }
      const following = entry.hasAttribute("data-following");
      showCounts(entry, Number(entry.dataset.unread) + (following ? messages : 0),
        Number(entry.dataset.mentions) + mentioned);
    });
    retitle(loud(entries[0]) - before);
  }
  if (activity) {
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        mutation.addedNodes.forEach(function (node) {
          if (node.nodeType !== 1 || !node.matches("[data-room-activity], [data-room-read]")) return;
          count(node);
          node.remove();
        });
      });
    }).observe(activity, { childList: true });
  }

  // 9. Notifications (base.html #notifications: a private message, a mention, pushed to
  //    whatever page the user is on). Each fades and collapses by itself (chat.css, no
  //    timer) and only the last three show; the older ones are taken out here, so that a
  //    page left open for days does not pile them up.
  const notifications = document.getElementById("notifications");
  if (notifications) {
    new MutationObserver(function () {
      while (notifications.children.length > 5) notifications.firstElementChild.remove();
    }).observe(notifications, { childList: true });
  }

  // 10. "ann is typing…": typing in the room's composer submits the page's hidden
  //    #typing-signal form (ws-send: {"typing": "1"} over the room's socket), at most once
  //    every 3 s, counted from the last one sent (no timer). The server throttles too,
  //    and sends everyone the line, which goes away by itself (rooms/typists.py).
  let typingSent = 0;
  document.addEventListener("input", function (event) {
    const signal = document.getElementById("typing-signal");
    if (!signal || !(event.target instanceof HTMLElement) || event.target.id !== "id_body") return;
    if (Date.now() - typingSent < 3000) return;
    typingSent = Date.now();
    signal.requestSubmit();
  });

  // 11. Each send carries the composer's send id (its hidden "token"): the server stores
  //    the same send once, even when it comes again because its answer was lost (the
  //    socket dropped; the text is still in the composer, and is sent again). A page's
  //    composer comes with one; the emptied composer a socket sends back has none, so the
  //    first send from it makes one, kept until the composer is answered.
  document.addEventListener("htmx:wsConfigSend", function (event) {
    const token = event.target instanceof HTMLFormElement && event.target.querySelector("input[name=token]");
    if (!token) return;
    if (!token.value) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      token.value = Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
    }
    event.detail.parameters.token = token.value;
  });

  // 12. A file goes over HTTP, not the socket: when the composer is submitted with a file
  //    chosen, its socket send is cancelled and htmx posts the same form (multipart: its
  //    hx-encoding) to the room's composer URL. The answer is the composer, emptied or
  //    with its error; the message itself arrives over the socket, as every message does.
  document.addEventListener("htmx:wsConfigSend", function (event) {
    const form = event.target;
    const file = form instanceof HTMLFormElement && form.querySelector("input[type=file][name=file]");
    if (!file || !file.files.length) return;
    event.preventDefault();
    if (event.detail.triggeringEvent) event.detail.triggeringEvent.preventDefault();
    // Too big to be taken at all: said at once, instead of after the upload (the server
    // cuts such a body off with a bare 413, which is no composer to show).
    const max = Number(file.dataset.maxBytes);
    if (max && file.files[0].size > max) {
      file.setCustomValidity("That file is too big: files can be at most " + Math.floor(max / 1048576 * 10) / 10 + " MiB.");
      file.reportValidity();
      file.addEventListener("change", function () { file.setCustomValidity(""); }, { once: true });
      return;
    }
    htmx.ajax("POST", form.getAttribute("action"), { source: form, target: form, swap: "outerHTML" });
  });
})();

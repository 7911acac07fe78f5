// The only JavaScript of our own: three small hooks around htmx's ws extension.
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
})();

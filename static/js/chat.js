// The only JavaScript of our own: three small hooks around htmx's ws extension.
// Everything on screen is HTML the server renders; this file only tunes the socket.
(function () {
  "use strict";

  // 1. Reconnect from the newest message this page shows: the server then sends
  //    exactly what was missed while the socket was down (?after=<message id>), and
  //    the online list afresh (&resync=1).
  let connections = 0;
  htmx.createWebSocket = function (url) {
    let after = 0;
    document.querySelectorAll("#chat-log [data-message-id]").forEach(function (el) {
      after = Math.max(after, Number(el.dataset.messageId));
    });
    url = url.replace(/([?&]after=)\d*/, "$1" + after);
    if (connections++ > 0) url += "&resync=1";
    const socket = new WebSocket(url);
    socket.binaryType = htmx.config.wsBinaryType;
    return socket;
  };

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

// The styleguide's only script (templates/styleguide/index.html): its samples are
// pictures of forms, not forms to send. A submit inside one goes nowhere (htmx leaves them
// alone already: hx-disable); links still go where they say. A submit does not leave a
// shadow root (the samples shown as if alone), so each of those is listened to as well.
(function () {
  "use strict";
  function stay(event) {
    event.preventDefault();
  }
  document.addEventListener("submit", function (event) {
    if (event.target.closest && event.target.closest("[data-partial]")) stay(event);
  }, true);
  document.querySelectorAll("[data-partial] .styleguide-alone").forEach(function (host) {
    if (host.shadowRoot) host.shadowRoot.addEventListener("submit", stay, true);
  });
})();

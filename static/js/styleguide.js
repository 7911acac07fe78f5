// The styleguide's only script (templates/styleguide/index.html): its samples are
// pictures of forms, not forms to send. A submit inside one goes nowhere (htmx leaves them
// alone already: hx-disable); links still go where they say.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    if (event.target.closest && event.target.closest("[data-partial]")) event.preventDefault();
  }, true);
})();

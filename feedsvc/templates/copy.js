(function () {
  "use strict";
  function show(id, message) {
    document.getElementById(id + "-status").textContent = message;
  }
  function fallback(input, id) {
    input.select();
    show(id, document.execCommand("copy") ? "Copied" : "Press Ctrl+C to copy");
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var id = button.getAttribute("data-copy");
      var input = document.getElementById(id);
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () {
          show(id, "Copied");
        }, function () {
          fallback(input, id);
        });
      } else {
        fallback(input, id);
      }
    });
  });
})();

// Refuse an empty or over-size file before a large upload starts; the server checks again either way.
(function () {
  function mb(bytes) { return (bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0) + " MiB"; }
  // A limit reads as the server's message does: "25 MiB", not "25.0 MiB".
  function limitMb(bytes) { return Number.isInteger(bytes / 1048576) ? bytes / 1048576 + " MiB" : mb(bytes); }
  function problems(input) {
    var limit = Number(input.dataset.maxBytes), total = 0, found = [];
    Array.prototype.forEach.call(input.files || [], function (file) {
      total += file.size;
      if (file.size === 0) found.push(file.name + " is empty (0 bytes): there is nothing to attach.");
      else if (limit && file.size > limit) found.push(file.name + " is " + mb(file.size) + "; a file may be at most " + limitMb(limit) + ".");
    });
    var request = Number(input.dataset.maxRequest);
    if (request && total > request) found.push("The files together are " + mb(total) + "; one upload may carry at most " + limitMb(request) + ".");
    return found;
  }
  function show(input) {
    var box = document.getElementById(input.id + "-client-error"), found = problems(input);
    if (!box) return found;
    box.textContent = found.join(" ");
    box.hidden = found.length === 0;
    input.setAttribute("aria-invalid", found.length ? "true" : "false");
    input.closest(".field").classList.toggle("has-error", found.length > 0);
    return found;
  }
  document.querySelectorAll("input[type=file][data-max-bytes]").forEach(function (input) {
    input.addEventListener("change", function () { show(input); });
    if (input.form) input.form.addEventListener("submit", function (event) {
      if (show(input).length) { event.preventDefault(); input.focus(); }
    });
  });
})();

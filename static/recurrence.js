// Recurrence controls on the ticket form: refresh the preview of the next occurrences
// from the server as the rule changes, and show only the chosen end's field (End date or
// Occurrences). Which unit's options show is CSS; without JavaScript both end fields show,
// the server uses the chosen one, and the form's Preview button renders the same preview.
(function () {
  "use strict";
  var box = document.getElementById("recurrence");
  if (!box) { return; }
  var form = box.closest("form");
  var target = document.getElementById("recurrence-preview");
  var repeat = document.getElementById("is_recurring");
  var timer = null;
  var latest = 0;

  function showEnds() {
    var chosen = form.querySelector("input[name=recurrence_ends]:checked");
    var value = chosen ? chosen.value : "never";
    box.querySelectorAll(".for-ends").forEach(function (field) {
      field.hidden = !field.classList.contains(value);
    });
    box.querySelectorAll(".ends-hint").forEach(function (hint) { hint.hidden = true; });
  }

  function refresh() {
    if (repeat !== null && !repeat.checked) { return; }
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key.indexOf("recurrence_") === 0 || key === "next_occurrence") { params.append(key, value); }
    });
    var ticket = ++latest;
    fetch(box.dataset.previewUrl + "?" + params.toString(), {credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (html) { if (ticket === latest) { target.innerHTML = html; } })
      .catch(function () { /* keep the last preview; the Preview button still works */ });
  }

  function changed(event) {
    if (event && event.target && event.target.name === "recurrence_ends") { showEnds(); }
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  box.addEventListener("input", changed);
  box.addEventListener("change", changed);
  if (repeat) { repeat.addEventListener("change", changed); }
  showEnds();
  refresh();
}());

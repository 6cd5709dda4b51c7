// The sink's dashboards page: picking a person reloads the page for that person.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const select = document.getElementById("person");
  if (select) {
    select.addEventListener("change", () => select.form.submit());
  }
});

// The printable report page's Print button (admin/templates/report.html).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("print-report");
  if (button) button.addEventListener("click", () => window.print());
});

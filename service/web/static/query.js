// The query editor: YASGUI (served from our own origin) wired to our SPARQL endpoint, with
// our prefixes in new tabs and one ready-made tab per competency question.
(function () {
  "use strict";
  var host = document.getElementById("yasgui");
  var config = JSON.parse(document.getElementById("query-config").textContent);
  if (!host || typeof Yasgui === "undefined") return;
  var endpoint = new URL(config.endpoint, window.location.href).href;

  // Results: IRIs as CURIEs (our prefixes) and literals without their ^^datatype ("compact").
  var Yasr = Yasgui.Yasr;
  if (Yasr && Yasr.defaults) {
    Yasr.defaults.prefixes = config.prefixes;
    var table = Yasr.defaults.plugins && Yasr.defaults.plugins.table;
    if (table) table.dynamicConfig = Object.assign({}, table.dynamicConfig, { compact: true });
  }

  var yasgui = new Yasgui(host, {
    requestConfig: { endpoint: endpoint, method: "POST" },
    copyEndpointOnNewTab: true,
    // Tabs come from the server's current questions, not from an old browser session.
    persistenceId: null,
    populateFromUrl: false,
    // Only our endpoint: the catalogue would otherwise suggest public endpoints elsewhere.
    endpointCatalogueOptions: { getData: function () { return [{ endpoint: endpoint }]; } },
    // Autocompleters that call external services (LOV) are off: the editor works offline.
    yasqe: { value: config.default_query, autocompleters: ["prefixes", "variables"] },
    yasr: { prefixes: config.prefixes },
  });

  config.tabs.forEach(function (tab) {
    yasgui.addTab(false, {
      name: tab.name,
      yasqe: { value: tab.query },
      requestConfig: Object.assign({}, yasgui.config.requestConfig, { endpoint: endpoint }),
    });
  });

  // A Share link (YASGUI puts the query in the URL's #fragment) opens as its own tab, active.
  var shared = new URLSearchParams(window.location.hash.slice(1));
  if (shared.get("query")) {
    yasgui.addTab(true, {
      name: "shared query",
      yasqe: { value: shared.get("query") },
      requestConfig: Object.assign({}, yasgui.config.requestConfig, { endpoint: endpoint }),
    });
  }

  // YASGUI's markup has a few ARIA gaps (axe flags them); patch them after every redraw.
  function nameControls() {
    // A tablist may own only tabs: the "+" button sits inside it, so make it a tab too.
    host.querySelectorAll(".tabsList button.addTab:not([role])").forEach(function (el) {
      el.setAttribute("role", "tab");
      el.setAttribute("aria-selected", "false");
    });
    // Inactive tabs point at panels YASGUI only creates when the tab is first opened.
    host.querySelectorAll("[role=tab][aria-controls]").forEach(function (el) {
      if (!document.getElementById(el.getAttribute("aria-controls"))) {
        el.setAttribute("data-controls", el.getAttribute("aria-controls"));
        el.removeAttribute("aria-controls");
      }
    });
    host.querySelectorAll("[role=tab][data-controls]").forEach(function (el) {
      if (document.getElementById(el.getAttribute("data-controls"))) {
        el.setAttribute("aria-controls", el.getAttribute("data-controls"));
        el.removeAttribute("data-controls");
      }
    });
    host.querySelectorAll("textarea:not([aria-label])").forEach(function (el) {
      el.setAttribute("aria-label", "SPARQL query");
    });
    host.querySelectorAll("button:not([aria-label]), [role=button]:not([aria-label])").forEach(function (el) {
      if (!el.textContent.trim()) el.setAttribute("aria-label", el.title || "editor control");
    });
    host.querySelectorAll("input:not([aria-label])").forEach(function (el) {
      if (!el.id || !document.querySelector('label[for="' + el.id + '"]')) {
        el.setAttribute("aria-label", el.placeholder || "editor field");
      }
    });
    host.querySelectorAll("select:not([aria-label])").forEach(function (el) {
      el.setAttribute("aria-label", "results option");
    });
  }
  nameControls();
  new MutationObserver(nameControls).observe(host, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["aria-controls"],
  });
  window.cmpkgYasgui = yasgui;
})();

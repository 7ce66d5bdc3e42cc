// MathJax 3 (its release files, copied by `npgpt site build` from the pip package django-static-mathjax),
// configured before it loads; it fetches nothing from outside the site. The notebooks write $...$ and
// $$...$$; the Markdown pages (README, the API) reach it through pymdownx.arithmatex, which writes
// \(...\) and \[...\]. Code (pre, code) is never typeset.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  startup: {
    // once the page is typeset, say so: `npgpt site check` waits for it before reading the page
    pageReady: () => MathJax.startup.defaultPageReady().then(() => {
      document.documentElement.dataset.mathjax = "done";
    })
  }
};

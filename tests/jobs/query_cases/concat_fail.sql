-- fail: function_not_allowed
SELECT industry || '!' AS i, COUNT(*) AS n FROM tax GROUP BY industry || '!'

-- ok
SELECT industry, COUNT(*) AS n FROM tax GROUP BY industry

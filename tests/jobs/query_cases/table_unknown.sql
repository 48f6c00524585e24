-- ok
SELECT COUNT(*) AS n FROM tax

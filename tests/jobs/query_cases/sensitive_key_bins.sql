-- ok
SELECT FLOOR(t.rate / 5) * 5 AS band, COUNT(*) AS n FROM tax AS t GROUP BY FLOOR(t.rate / 5) * 5

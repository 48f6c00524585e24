-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums WHERE EXISTS (SELECT 1 FROM tax) GROUP BY race

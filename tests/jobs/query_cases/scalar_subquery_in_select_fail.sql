-- fail: subquery
SELECT race, (SELECT COUNT(*) FROM tax) AS n FROM pums GROUP BY race

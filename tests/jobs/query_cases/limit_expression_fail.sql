-- fail: single_select
SELECT race, COUNT(*) AS n FROM pums GROUP BY race LIMIT 1 + 1

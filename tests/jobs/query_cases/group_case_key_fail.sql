-- fail: group_key, column: pums.race
SELECT CASE WHEN race = 5 THEN 1 ELSE 0 END AS k, COUNT(*) AS n FROM pums GROUP BY CASE WHEN race = 5 THEN 1 ELSE 0 END

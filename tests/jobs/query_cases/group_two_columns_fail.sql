-- fail: group_key, column: pums.race
SELECT race + sex AS k, COUNT(*) AS n FROM pums GROUP BY race + sex

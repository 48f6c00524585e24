-- fail: bad_sql
SELECT race, COUNT(*) AS n FROM pums WHERE industry = 'C GROUP BY race

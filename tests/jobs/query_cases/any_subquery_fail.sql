-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums WHERE educ = ANY (SELECT educ FROM pums GROUP BY educ) GROUP BY race
